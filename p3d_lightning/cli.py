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
import warnings
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger
from torch.utils.data import DataLoader, DistributedSampler

from p3d_lightning.features import FeatureWriter
from p3d_lightning.module import P3DClassifier, default_precision

__all__ = [
    "P3DLightningCLI", "WandbConfigCallback", "main", "instantiate_from_config", "apply_overrides", "CHECKPOINT_DEFAULTS",
    "ResumableLoader", "ResumableSampler", "make_resumable",
]

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

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        make_resumable(self.datamodule)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the trainer and make sure a CSV logger is written next to any other logger."""
        trainer = super().instantiate_trainer(**kwargs)
        loggers = list(trainer.loggers)
        if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):
            save_dir = getattr(loggers[0], "save_dir", None) or trainer.default_root_dir
            trainer.loggers = [CSVLogger(save_dir=save_dir, name="csv")] + loggers
        return trainer


# ----------------------------------------------------------------------------- exact mid-epoch resume
class ResumableSampler(DistributedSampler):
    """Wraps a per-epoch deterministic ``DistributedSampler`` and can skip its first samples.

    Still a ``DistributedSampler``, so Lightning uses it as-is under DDP. ``set_epoch`` is
    forwarded (the wrapped sampler also forwards it to its dataset).
    """

    def __init__(self, inner: DistributedSampler) -> None:  # noqa: D107 (no super().__init__: copies state)
        self.inner = inner
        self.dataset = inner.dataset
        self.num_replicas, self.rank = inner.num_replicas, inner.rank
        self.epoch, self.seed, self.shuffle, self.drop_last = inner.epoch, inner.seed, inner.shuffle, inner.drop_last
        self.num_samples, self.total_size = inner.num_samples, inner.total_size
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.inner))
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return len(self.inner)


class ResumableLoader(DataLoader):
    """A train ``DataLoader`` with ``state_dict``/``load_state_dict``, so Lightning resumes it
    mid-epoch exactly: the batches already trained on in the interrupted epoch are skipped.

    Lightning does not pre-fetch from a loader with a length, so the batches yielded so far in
    the epoch are exactly the batches trained on when the checkpoint is written. Requires a
    sampler whose order is a function of ``(seed, epoch)`` (e.g. ``EpochSampler``, any
    ``DistributedSampler``) and per-sample randomness independent of the global RNG.
    """

    def __init__(self, loader: DataLoader) -> None:
        sampler = loader.sampler
        if not isinstance(sampler, DistributedSampler):
            raise TypeError(
                f"ResumableLoader needs a DistributedSampler-style train sampler with a per-epoch order, "
                f"got {type(sampler).__name__}"
            )
        kwargs: Dict[str, Any] = dict(
            batch_size=loader.batch_size, sampler=ResumableSampler(sampler), num_workers=loader.num_workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
            timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
            persistent_workers=loader.persistent_workers,
        )
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
            kwargs["multiprocessing_context"] = loader.multiprocessing_context
        super().__init__(loader.dataset, **kwargs)
        self._yielded = 0
        self._exhausted = False

    def __iter__(self):
        self._yielded, self._exhausted = self.sampler.skip // max(1, self.batch_size), False
        for batch in super().__iter__():
            self._yielded += 1
            yield batch
        self._exhausted = True

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": int(self.sampler.epoch), "consumed_batches": int(self._yielded), "batch_size": self.batch_size}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(
                f"cannot resume the train loader mid-epoch: batch_size changed from {state['batch_size']} "
                f"to {self.batch_size}"
            )
        self.sampler.skip = int(state["consumed_batches"]) * self.batch_size


def make_resumable(datamodule: Any) -> Any:
    """Make ``datamodule.train_dataloader()`` return a :class:`ResumableLoader` (in place).

    A no-op when the data module's loader is already stateful or its sampler is not a
    ``DistributedSampler``. Returns the data module.
    """
    if datamodule is None or getattr(datamodule, "_p3d_resumable", False):
        return datamodule
    original = datamodule.train_dataloader

    def train_dataloader() -> Any:
        loader = original()
        if hasattr(loader, "state_dict") or not isinstance(getattr(loader, "sampler", None), DistributedSampler):
            return loader
        return ResumableLoader(loader)

    datamodule.train_dataloader = train_dataloader
    datamodule._p3d_resumable = True
    return datamodule


def _flatten_class_sections(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Accept ``model:``/``data:`` written as ``{class_path, init_args}`` as well as plain."""
    cfg = copy.deepcopy(raw)
    for key in ("model", "data"):
        section = cfg.get(key)
        if isinstance(section, dict) and "init_args" in section:
            cfg[key] = dict(section.get("init_args") or {})
    return cfg


def apply_overrides(raw: Dict[str, Any], overrides: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Set dotted keys (``data.root``, ``trainer.max_steps``) in a config dict, in place."""
    for dotted, value in (overrides or {}).items():
        node = raw
        keys = dotted.split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return raw


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """``["data.root=/x", "trainer.max_steps=10"]`` -> ``{"data.root": "/x", "trainer.max_steps": 10}``.

    Values are parsed as YAML (numbers, booleans, lists). Raises ``ValueError`` naming the
    item when it has no ``=``.
    """
    out: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def instantiate_from_config(
    raw: Union[Dict[str, Any], str], source: str = "<config>",
    overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[P3DClassifier, Any, Dict[str, Any]]:
    """Parse a complete experiment config and build its model and data module.

    Args:
        raw: the YAML content as a dict, or a path to the YAML file.
        source: a name for error messages (the file path).
        overrides: dotted keys set on top of the config (see :func:`apply_overrides`).

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
    cfg = _flatten_class_sections(apply_overrides(copy.deepcopy(raw), overrides))
    try:
        with warnings.catch_warnings():  # args given in Python while sys.argv holds the caller's own
            warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
            cli = P3DLightningCLI(args=cfg, run=False, save_config_callback=None)
    except SystemExit as err:  # jsonargparse reports the problem on stderr, then exits
        raise ValueError(f"{source}: invalid experiment config (see the error above)") from err
    except (ValueError, TypeError) as err:  # raised by a constructor: name the file
        raise ValueError(f"{source}: {err}") from err
    trainer_kwargs = dict(cli.config_init.get("trainer", {}))
    trainer_kwargs["seed_everything"] = cli.config.get("seed_everything")
    return cli.model, make_resumable(cli.datamodule), trainer_kwargs


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point ``p3d`` (``p3d --help``, ``p3d fit --help``)."""
    P3DLightningCLI(args=list(args) if args is not None else None)


if __name__ == "__main__":
    main()
