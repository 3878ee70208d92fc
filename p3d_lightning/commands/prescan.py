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
from typing import Optional, Sequence

from p3d_lightning.data.annotations import DATASETS, load_annotations
from p3d_lightning.data.prescan import all_videos, prescan
from p3d_lightning.data.quarantine import QUARANTINE_FILENAME, write_quarantine
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Scan a dataset (or every video file under root) and write the quarantine list."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
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
        paths = all_videos(a.root)
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
