"""``p3d-flow ROOT``: TV-L1 (or Farneback) optical flow of a dataset's videos as x/y JPEG frames
under ``<root>_flow``, resumable and parallel (:mod:`p3d_lightning.data.flow`)."""
from __future__ import annotations

import argparse
import os
import warnings
from typing import List, Optional, Sequence, Tuple, Union

from p3d_lightning.data import flow
from p3d_lightning.data.annotations import DATASETS, load_annotations
from p3d_lightning.data.flow import FAILURES_FILENAME, FLOW_METHODS, default_flow_root, extract_flow
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def _parse_resize(values: Optional[List[int]]) -> Union[None, int, Tuple[int, int]]:
    if not values:
        return None
    if len(values) == 1:
        return int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise argparse.ArgumentTypeError(f"--resize takes H W or a short side, got {values}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``p3d-flow ROOT``: TV-L1 (or Farneback) flow of a dataset's videos as x/y JPEG frames."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    ap = argparse.ArgumentParser(prog="p3d-flow", description=flow.__doc__.split("\n\n")[0])
    ap.add_argument("root", help="dataset root (the folder holding the class folders)")
    ap.add_argument("--dataset", choices=DATASETS, default="folder",
                    help="read this dataset's split files (train + test videos of --split); default: folder")
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--annotation-dir", default=None)
    ap.add_argument("--output", default=None, help="flow root (default: <root>_flow, what VideoDataModule reads)")
    ap.add_argument("--method", choices=FLOW_METHODS, default="tvl1")
    ap.add_argument("--bound", type=float, default=20.0, help="clip flow to [-bound, bound] pixels (default 20)")
    ap.add_argument("--resize", type=int, nargs="+", default=None, metavar="N",
                    help="H W, or a short side; use the data config's resize (e.g. 182 242)")
    ap.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality")
    ap.add_argument("--overwrite", action="store_true", help="recompute folders that are already complete")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.root):
        ap.error(f"dataset root {os.path.abspath(a.root)!r} does not exist")
    try:
        resize = _parse_resize(a.resize)
    except argparse.ArgumentTypeError as err:
        ap.error(str(err))
    ann = load_annotations(a.dataset, a.root, a.split, a.annotation_dir)
    paths = [r.path for r in ann.train + ann.test]
    flow_root = a.output or default_flow_root(a.root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            res = extract_flow(paths, a.root, flow_root, a.method, a.bound, resize, a.workers, a.quality, a.overwrite)
        except ImportError as err:
            print(f"p3d-flow: {err}")
            return 2
    for p, r in res["failed"]:
        print(f"BAD  {p}: {r}")
    rate = res["flow_frames"] / res["seconds"] if res["seconds"] > 0 else 0.0
    print(f"{len(set(paths))} videos: {res['done']} extracted, {res['skipped']} already complete, "
          f"{len(res['failed'])} failed; {res['flow_frames']} flow frames in {res['seconds']:.1f} s "
          f"({rate:.1f} frames/s, {a.workers} workers); output {flow_root}, failures in "
          f"{os.path.join(flow_root, FAILURES_FILENAME)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
