"""The paper's Table 1 as a command: train and evaluate ResNet-50, P3D-A, P3D-B, P3D-C and the
mixed P3D ResNet with identical data, seed and schedule, then write the table.

Usage::

    p3d-ablation                                   # synthetic motion set, the main job
    p3d-ablation --config experiments/ablation_ucf101.yaml --models p3d_a p3d
    p3d-ablation --output runs/my_ablation --data.root /data/UCF-101     # any run option, as p3d takes it
    p3d-ablation --seeds 0 1 2 --output runs/ablation_3seeds    # 3 seeds per model: mean, std, 95% intervals
    p3d-ablation --config experiments/ablation_clip_length.yaml  # P3D ResNet at 8 / 16 / 32 frames per clip

The config format is :mod:`p3d_lightning.ablation.config`'s. What it writes in the output
folder, as each run finishes (so an interrupted ablation loses nothing): ``results.csv`` (one
row per model, replaced atomically), ``table.md`` (ours beside the paper's numbers, clearly
labelled), ``accuracy_vs_speed.png``, ``training_curves.png`` (loss, val accuracy, lr per model,
from the CSV logs), and per model ``runs/<model>/`` with checkpoints
(``last.ckpt``), CSV logs and the W&B run. Re-running skips models already in ``results.csv``
and resumes an unfinished one from its ``last.ckpt``.

With ``--seeds`` (or ``seeds:`` in the config) every model trains once per seed into
``runs/<model>/seed<s>/``; ``results.csv`` holds one row per (model, seed), ``table.md`` the
means with ± std, 95% intervals and paired comparisons, also written as ``summary.csv`` and
``paired.csv``. Resuming works per seed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from p3d_lightning.ablation import (DEFAULT_CONFIG, QUICK_OVERRIDES, AblationError, load_ablation_config,
                                    quick_config, run_ablation, write_markdown_table)
from p3d_lightning.experiment import parse_dotted_args, parse_overrides
from p3d_lightning.loggers import own_wandb_service
from p3d_lightning.precision import PrecisionUnsupportedError
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def build_parser() -> argparse.ArgumentParser:
    """The ``p3d-ablation`` options."""
    parser = argparse.ArgumentParser(
        prog="p3d-ablation", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Any other option --<section>.<key> VALUE overrides every run's config as p3d's options do "
               "(e.g. --data.root /data/UCF-101 --trainer.devices 4); --set KEY=VALUE is the same.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="ablation YAML (default: the synthetic one)")
    parser.add_argument("--models", nargs="+", help="subset of the config's runs, in order")
    parser.add_argument("--output", help="output folder (default: the config's output_dir)")
    parser.add_argument("--wandb", default="auto", choices=["auto", "online", "offline", "disabled"])
    parser.add_argument("--project", default="p3d-lightning", help="W&B project")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override every run's config")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="train every model once per seed (overrides the config's seeds); the table "
                             "then shows mean +- std, 95%% intervals and paired comparisons")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: a smoke run of the whole pipeline (tiny nets, 32 px crops, "
                             f"{QUICK_OVERRIDES['trainer.max_steps']} steps, no paper-scale speed) into "
                             "<output_dir>_quick; its accuracies mean nothing")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point ``p3d-ablation``: run (or finish) the ablation, print the table."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    parser = build_parser()
    args, dotted = parser.parse_known_args(argv)
    try:
        extra = {**parse_overrides(args.set), **parse_dotted_args(dotted)}
    except ValueError as err:
        parser.error(str(err))
    own_wandb_service()
    try:
        config = load_ablation_config(args.config)
        if args.quick:
            config = quick_config(config)
        rows = run_ablation(
            config,
            models=args.models,
            output_dir=args.output,
            wandb_mode=args.wandb,
            wandb_project=args.project,
            extra_overrides=extra,
            progress=not args.no_progress,
            seeds=args.seeds,
        )
    except (AblationError, PrecisionUnsupportedError) as err:
        print(f"p3d-ablation: error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output or config.output_dir)
    print()
    print(write_markdown_table(rows))
    print(f"results CSV : {output / 'results.csv'}")
    print(f"table       : {output / 'table.md'}")
    print(f"plot        : {output / 'accuracy_vs_speed.png'}")
    print(f"curves      : {output / 'training_curves.png'}")
    for label, name in (("across seeds", "summary.csv"), ("paired", "paired.csv"),
                        ("clip length", "accuracy_vs_clip_length.png")):
        if (output / name).is_file():
            print(f"{label:<12}: {output / name}")
    wandb_dirs = (f"{os.environ['WANDB_DIR']}/wandb" if os.environ.get("WANDB_DIR")
                  else f"{output / 'wandb'} {output / 'runs'}/*/wandb")
    print(f"W&B runs    : {wandb_dirs}  (offline: `wandb sync {wandb_dirs}`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
