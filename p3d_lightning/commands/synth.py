"""``p3d-synth ROOT``: write the synthetic motion dataset (:mod:`p3d_lightning.data.synthetic`) in
the UCF101 layout.

Imports numpy and the renderer only, so ``p3d-synth --help`` starts at once; the encoding
workers load PyAV.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from p3d_lightning.data import synthetic
from p3d_lightning.data.synthetic import PAIRS, generate_synthetic_dataset
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``p3d-synth``: generate the synthetic motion dataset."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    ap = argparse.ArgumentParser(prog="p3d-synth", description=synthetic.__doc__.split("\n\n")[0])
    ap.add_argument("root", help="output folder (UCF101 layout)")
    ap.add_argument("--num-pairs", type=int, default=4, help=f"class pairs, 1..{len(PAIRS)} (default 4 = 8 classes)")
    ap.add_argument("--videos-per-class", type=int, default=48)
    ap.add_argument("--clips-per-group", type=int, default=4)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"),
                    help="frame size (default 120 160; UCF101 is 240 320)")
    ap.add_argument("--num-frames", type=int, default=50)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    info = generate_synthetic_dataset(
        a.root, num_pairs=a.num_pairs, videos_per_class=a.videos_per_class, clips_per_group=a.clips_per_group,
        test_fraction=a.test_fraction, size=a.size, num_frames=a.num_frames, fps=a.fps, seed=a.seed,
        num_workers=a.workers, overwrite=a.overwrite)
    if info["generated"]:
        print(f"wrote {info['num_train']} train + {info['num_test']} test videos of {len(info['classes'])} classes "
              f"to {info['root']} in {info['seconds']:.1f} s")
    else:
        print(f"{info['root']} already holds a dataset (classInd.txt present); use --overwrite to regenerate")


if __name__ == "__main__":
    main()
