"""``p3d``: fit / validate / test / predict an experiment (see :mod:`p3d_lightning.experiment`).

Usage::

    p3d fit      --config experiments/ucf101/p3d.yaml                       # runs/ucf101_p3d/version_0/
    p3d fit      --config experiments/ucf101/p3d.yaml --ckpt_path last      # resume the latest run
    p3d test     --config experiments/ucf101/p3d.yaml --ckpt_path best      # best by val/video_acc1
    p3d predict  --config experiments/ucf101/p3d199_features.yaml --ckpt_path last
    p3d fit      --config experiments/synthetic/p3d.yaml --print_config     # resolved config
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from p3d_lightning.experiment import ConfigError, P3DLightningCLI, check_config_files
from p3d_lightning.loggers import own_wandb_service
from p3d_lightning.models.weights import CheckpointError
from p3d_lightning.precision import PrecisionUnsupportedError
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point ``p3d`` (``p3d --help``, ``p3d fit --help``).

    A missing or unreadable checkpoint exits with status 2 and a message naming the file.
    """
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    own_wandb_service()
    try:
        check_config_files(list(args) if args is not None else sys.argv[1:])
        P3DLightningCLI(args=list(args) if args is not None else None)
    except (CheckpointError, ConfigError, PrecisionUnsupportedError) as err:
        print(f"p3d: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
