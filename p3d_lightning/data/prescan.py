"""Finding unreadable videos before training: the library of ``p3d-prescan``.

``check_video`` says why one file is not a readable video: a probe (container, frame count,
first frame: what the datamodule's index does anyway) finds absent, empty, truncated and
non-video files, still images renamed as videos and directories named like videos; with
``full=True`` every frame is decoded as well, which catches frames the decoder flags corrupt
and files that decode to less than 90% of their packets. ``prescan`` checks many files in
threads; ``all_videos`` lists what a dataset root holds when no annotations are given. The
results go to a quarantine list (:mod:`.quarantine`).

Needs PyAV but not torch: probing and scanning convert no pixels.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from tqdm.auto import tqdm

from .annotations import VIDEO_EXTENSIONS
from .container import DecodeError, probe_video, scan_frames

__all__ = ["check_video", "prescan", "all_videos"]


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
    """``(path, reason)`` for every unreadable video among ``paths`` (each file checked once)."""
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        reasons = list(tqdm(pool.map(lambda p: check_video(p, full), paths), total=len(paths),
                            desc="scanning videos", unit="video", disable=not progress))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def all_videos(root: str) -> List[str]:
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
