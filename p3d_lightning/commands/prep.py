"""``p3d-prep SRC DST``: re-encode a dataset tree once for fast random clips (see
:mod:`p3d_lightning.data.prep` for the settings, the verification and the resumable manifest)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from p3d_lightning.data import prep
from p3d_lightning.data.prep import DEFAULT_QUALITY, PrepSettings, prepare_tree
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def _gb_per_hour(nbytes: int, hours: float) -> str:
    return f"{nbytes / 1e9 / hours:.2f} GB/h" if hours > 0 else "n/a"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prepare a dataset tree; print bad sources, mismatches and the disk cost per hour."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    ap = argparse.ArgumentParser(prog="p3d-prep", description=prep.__doc__.split("\n\n")[0])
    ap.add_argument("src", help="dataset root to read (the folder holding the class folders)")
    ap.add_argument("dst", help="where to write the prepared tree (same relative paths)")
    ap.add_argument("--short-side", type=int, default=182,
                    help="short side of the prepared frames (default 182, the P3D configs' resize; 0 keeps the size)")
    ap.add_argument("--gop", type=int, default=8, help="a keyframe every GOP frames (default 8)")
    ap.add_argument("--codec", choices=("mpeg4", "libx264"), default="mpeg4")
    ap.add_argument("--quality", type=int, default=None,
                    help="mpeg4 qscale (2-31, default 3) or libx264 CRF (0-51, default 18)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel encoders")
    ap.add_argument("--force", action="store_true", help="re-encode everything, ignoring the manifest")
    ap.add_argument("--no-copy-other", action="store_true", help="do not copy split files / CSVs / other files")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    quality = a.quality if a.quality is not None else DEFAULT_QUALITY[a.codec]
    settings = PrepSettings(short_side=a.short_side or None, gop=a.gop, codec=a.codec, quality=quality)
    try:
        settings.check()
        if not os.path.isdir(a.src):
            raise FileNotFoundError(f"p3d-prep: source root {os.path.abspath(a.src)!r} does not exist")
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    s = prepare_tree(a.src, a.dst, settings, workers=a.workers, progress=not a.no_progress,
                     copy_other=not a.no_copy_other, force=a.force)
    for rel in s["bad"]:
        print(f"BAD  {os.path.abspath(os.path.join(a.src, rel))}: {s['reasons'][rel]}")
    for rel in s["mismatched"]:
        print(f"MISMATCH  {os.path.abspath(os.path.join(a.src, rel))}: {s['reasons'][rel]}")
    n_ok = len(s["prepared"]) + len([r for r in s["skipped"] if r not in s["bad"]])
    print(f"{len(s['prepared'])} prepared, {len(s['skipped'])} unchanged and skipped, {len(s['bad'])} bad sources, "
          f"{len(s['mismatched'])} failed verification; {n_ok} good videos, {s['hours'] * 60:.1f} min of video")
    print(f"disk per hour of video: source {_gb_per_hour(s['source_bytes'], s['hours'])}, "
          f"prepared {_gb_per_hour(s['prepared_bytes'], s['hours'])} "
          f"({s['prepared_bytes'] / max(1, s['source_bytes']):.2f}x the source)")
    print(f"manifest: {s['manifest']}; quarantine list: {s['quarantine']}")
    return 1 if s["mismatched"] else 0


if __name__ == "__main__":
    sys.exit(main())
