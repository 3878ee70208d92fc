"""``p3d-prescan``: find unreadable videos and write a quarantine list.

The list has one ``<path relative to root>\\t<reason>`` line per bad video. ``VideoDataModule``
skips the listed videos: pass ``quarantine_file=...``, or leave it unset and it picks up
``<root>/p3d_quarantine.txt`` (the default output) by itself.

Without ``--full`` each video is probed (container, frame count, first frame), which is what the
datamodule's index does anyway: it finds absent, empty, truncated and non-video files, still
images renamed as videos (a PNG named ``.mp4``) and directories named like videos. ``--full``
decodes every frame and also catches files that are corrupt in the middle: frames the decoder
flags corrupt (damaged bytes FFmpeg would otherwise conceal; the reason counts them) and files
that decode to less than 90% of their packets.

Without ``--dataset`` every entry under root whose name has a video extension is scanned,
files and directories alike (the ``folder`` and ``kinetics`` layouts list such names too).
Each bad file is named once, however many times the annotations list it.
"""
from __future__ import annotations

import argparse
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from tqdm.auto import tqdm

from .annotations import DATASETS, VIDEO_EXTENSIONS, load_annotations
from .decode import DecodeError, probe_video, scan_frames

__all__ = ["QUARANTINE_FILENAME", "check_video", "prescan", "write_quarantine", "main"]

QUARANTINE_FILENAME = "p3d_quarantine.txt"


def check_video(path: str, full: bool = False) -> Optional[str]:
    """``None`` if ``path`` is a readable video, else the reason it is not."""
    try:
        meta = probe_video(path, validate=True)
        if full:
            scan = scan_frames(path)
            if scan.corrupt:
                shown = ", ".join(str(i) for i in scan.corrupt[:5]) + (", ..." if len(scan.corrupt) > 5 else "")
                return (f"{len(scan.corrupt)} of {scan.decoded} frames corrupt (damaged data; "
                        f"frame{'s' if len(scan.corrupt) > 1 else ''} {shown})")
            if scan.decoded < 0.9 * meta.num_frames:
                return f"only {scan.decoded} of {meta.num_frames} frames decode (corrupt or truncated)"
    except DecodeError as e:
        return e.reason
    return None


def prescan(paths: Sequence[str], full: bool = False, num_threads: int = 4,
            progress: bool = True) -> List[Tuple[str, str]]:
    """``(path, reason)`` for every unreadable video among ``paths``."""
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        reasons = list(tqdm(pool.map(lambda p: check_video(p, full), paths), total=len(paths),
                            desc="scanning videos", unit="video", disable=not progress))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def write_quarantine(path: str, bad: Sequence[Tuple[str, str]], root: str) -> None:
    """Write the quarantine list (paths relative to ``root`` where possible)."""
    root = os.path.abspath(root)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# p3d-prescan quarantine list: <path relative to dataset root><TAB><reason>\n")
        for p, r in bad:
            rel = os.path.relpath(p, root)
            f.write(f"{p if rel.startswith('..') else rel}\t{r}\n")


def _all_videos(root: str) -> List[str]:
    """Every file or directory under ``root`` whose name has a video extension (a directory
    named ``x.avi`` is listed, not entered: the datamodule would try to read it as a video).
    Symlinked folders are followed, as the annotation parsers follow them (each real folder once)."""
    out = []
    seen = set()
    for d, subdirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:  # a link cycle, or a second link to the same folder
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs.sort()
        named_like_video = [n for n in subdirs if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS]
        subdirs[:] = [n for n in subdirs if n not in named_like_video]
        entries = sorted(names + named_like_video)
        out += [os.path.join(d, n) for n in entries if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Scan a dataset (or every video file under root) and write the quarantine list."""
    ap = argparse.ArgumentParser(prog="p3d-prescan", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="dataset root (the folder holding the class folders)")
    ap.add_argument("--dataset", choices=DATASETS, default=None,
                    help="read this dataset's annotations (all splits' videos, absent ones included); "
                         "default: every video file under root")
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--annotation-dir", default=None)
    ap.add_argument("--output", default=None, help=f"quarantine file (default <root>/{QUARANTINE_FILENAME})")
    ap.add_argument("--full", action="store_true", help="decode every frame, not just probe")
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args(argv)
    if not os.path.isdir(a.root):
        ap.error(f"dataset root {os.path.abspath(a.root)!r} does not exist")
    if a.dataset:
        ann = load_annotations(a.dataset, a.root, a.split, a.annotation_dir)
        paths = [r.path for r in ann.train + ann.test]
    else:
        paths = _all_videos(a.root)
    bad = prescan(paths, full=a.full, num_threads=a.threads)
    out = a.output or os.path.join(a.root, QUARANTINE_FILENAME)
    write_quarantine(out, bad, a.root)
    for p, r in bad:
        print(f"BAD  {p}: {r}")
    corrupt = [int(m.group(1)) for _, r in bad for m in [re.match(r"(\d+) of \d+ frames corrupt", r)] if m]
    extra = (f" ({len(corrupt)} with corrupt frames, {sum(corrupt)} corrupt frames in all)" if corrupt else "")
    print(f"scanned {len({os.path.abspath(p) for p in paths})} videos, {len(bad)} unreadable{extra}; "
          f"quarantine list written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
