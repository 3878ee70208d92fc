"""``p3d-report``: files the notebooks read, made from trained runs.

Usage::

    p3d-report clip-predictions --config experiments/ucf101/p3d.yaml \\
        --ckpt runs/ablation_ucf101/runs/p3d/checkpoints/last.ckpt --out predictions/p3d.pt

``clip-predictions`` saves the per-clip test scores that ``03_table2_protocol.ipynb`` reads
(see :func:`p3d_lightning.reports.clip_predictions_from_checkpoint`) and prints their Table 2
protocol metrics.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from p3d_lightning.experiment import parse_overrides
from p3d_lightning.reports import clip_predictions_from_checkpoint, load_clip_predictions, protocol_metrics
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p3d-report", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cp = sub.add_parser("clip-predictions", help="run a checkpoint on a test loader and save per-clip scores")
    cp.add_argument("--config", required=True, help="the experiment YAML the checkpoint was trained with")
    cp.add_argument("--ckpt", required=True, help="a P3DClassifier checkpoint (.ckpt)")
    cp.add_argument("--out", required=True, help="the .pt file to write")
    cp.add_argument("--stage", default="test", choices=["test", "val", "predict"])
    cp.add_argument("--device", default="cpu")
    cp.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``p3d-report clip-predictions --config X.yaml --ckpt Y.ckpt --out Z.pt``: save the per-clip
    test scores that ``03_table2_protocol.ipynb`` reads."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    out = clip_predictions_from_checkpoint(args.ckpt, args.config, args.out, args.stage, overrides, args.device)
    metrics = protocol_metrics(load_clip_predictions(out))
    print(f"wrote {out}: clip hit@1 {metrics['clip_hit1']:.1f}%, video hit@1 {metrics['video_hit1']:.1f}%, "
          f"video hit@{metrics['top_k_video']} {metrics['video_hit5']:.1f}% "
          f"({metrics['num_videos']} videos, {metrics['num_clips']} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
