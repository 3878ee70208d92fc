"""The ``p3d`` command: LightningCLI with fit / validate / test / predict.

Usage::

    p3d fit      --config experiments/ucf101/p3d.yaml
    p3d fit      --config experiments/ucf101/p3d.yaml --ckpt_path last      # resume
    p3d test     --config experiments/ucf101/p3d.yaml --ckpt_path best
    p3d predict  --config experiments/ucf101/p3d199_features.yaml --features.output_dir feats/
    p3d fit      --config experiments/synthetic/p3d.yaml --print_config     # resolved config

Config sections: ``model`` (:class:`~p3d_lightning.module.P3DClassifier`), ``data``
(:class:`~p3d_lightning.data.VideoDataModule`), ``trainer``, ``checkpoint`` (the
``ModelCheckpoint``: best by ``val/video_acc1`` plus ``last.ckpt``) and ``features`` (the
:class:`~p3d_lightning.features.FeatureWriter` used by ``predict``). ``num_classes`` is
written once, in ``data``, and linked to ``model.num_classes``. ``trainer.precision``
defaults to :func:`~p3d_lightning.module.default_precision` (``bf16-mixed`` where the CPU or
GPU runs bf16 natively); set ``trainer.precision: 32-true`` to switch it off.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

from p3d_lightning.features import FeatureWriter
from p3d_lightning.module import P3DClassifier, default_precision

__all__ = ["P3DLightningCLI", "WandbConfigCallback", "main", "instantiate_from_config", "CHECKPOINT_DEFAULTS"]

#: Defaults of the ``checkpoint`` section: best by video top-1, plus last.ckpt for resuming.
CHECKPOINT_DEFAULTS: Dict[str, Any] = {
    "monitor": "val/video_acc1",
    "mode": "max",
    "save_last": True,
    "save_top_k": 1,
    "filename": "best-step{step}",
    "auto_insert_metric_name": False,
}


class WandbConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` in the log folder and the resolved config into every W&B run."""

    def save_config(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, _LightningWandbLogger)]
        if not loggers:
            return
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False)) or {}
        resolved = {k: v for k, v in resolved.items() if k != "config"}
        for logger in loggers:
            try:
                logger.experiment.config.update({"cli": resolved}, allow_val_change=True)
            except AttributeError:  # disabled/dummy experiment
                pass


class P3DLightningCLI(LightningCLI):
    """LightningCLI with the project's links and defaults (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args and "model_class" not in kwargs:
            kwargs["model_class"] = P3DClassifier
        if len(args) < 2 and "datamodule_class" not in kwargs:
            from p3d_lightning.data import VideoDataModule

            kwargs["datamodule_class"] = VideoDataModule
        kwargs.setdefault("save_config_callback", WandbConfigCallback)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(FeatureWriter, "features")
        parser.set_defaults({"trainer.precision": default_precision()})
        parser.link_arguments("data.num_classes", "model.num_classes")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            # FeatureWriter streams per-batch outputs to disk; do not also keep them all in memory
            parser.set_defaults({"return_predictions": False})
        return parser

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the trainer and make sure a CSV logger is written next to any other logger."""
        trainer = super().instantiate_trainer(**kwargs)
        loggers = list(trainer.loggers)
        if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):
            save_dir = getattr(loggers[0], "save_dir", None) or trainer.default_root_dir
            trainer.loggers = [CSVLogger(save_dir=save_dir, name="csv")] + loggers
        return trainer


def _flatten_class_sections(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Accept ``model:``/``data:`` written as ``{class_path, init_args}`` as well as plain."""
    cfg = copy.deepcopy(raw)
    for key in ("model", "data"):
        section = cfg.get(key)
        if isinstance(section, dict) and "init_args" in section:
            cfg[key] = dict(section.get("init_args") or {})
    return cfg


def instantiate_from_config(
    raw: Union[Dict[str, Any], str], source: str = "<config>"
) -> Tuple[P3DClassifier, Any, Dict[str, Any]]:
    """Parse a complete experiment config and build its model and data module.

    Args:
        raw: the YAML content as a dict, or a path to the YAML file.
        source: a name for error messages (the file path).

    Returns:
        ``(model, datamodule, trainer_kwargs)``; ``trainer_kwargs`` is the resolved ``trainer``
        section (loggers and callbacks as instantiated objects) plus ``seed_everything``.
    """
    if isinstance(raw, str):
        source = raw
        with open(raw) as f:
            raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a YAML mapping with model/data/trainer sections")
    cfg = _flatten_class_sections(raw)
    try:
        cli = P3DLightningCLI(args=cfg, run=False, save_config_callback=None)
    except SystemExit as err:  # jsonargparse reports the problem on stderr, then exits
        raise ValueError(f"{source}: invalid experiment config (see the error above)") from err
    trainer_kwargs = dict(cli.config_init.get("trainer", {}))
    trainer_kwargs["seed_everything"] = cli.config.get("seed_everything")
    return cli.model, cli.datamodule, trainer_kwargs


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point ``p3d`` (``p3d --help``, ``p3d fit --help``)."""
    P3DLightningCLI(args=list(args) if args is not None else None)


if __name__ == "__main__":
    main(sys.argv[1:])
