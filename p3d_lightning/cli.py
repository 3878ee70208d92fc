"""The ``p3d`` command: LightningCLI with fit / validate / test / predict.

Usage::

    p3d fit      --config experiments/ucf101/p3d.yaml                       # runs/ucf101_p3d/version_0/
    p3d fit      --config experiments/ucf101/p3d.yaml --ckpt_path last      # resume the latest run
    p3d test     --config experiments/ucf101/p3d.yaml --ckpt_path best      # best by val/video_acc1
    p3d predict  --config experiments/ucf101/p3d199_features.yaml --ckpt_path last
    p3d fit      --config experiments/synthetic/p3d.yaml --print_config     # resolved config

Config sections: ``model`` (:class:`~p3d_lightning.module.P3DClassifier`), ``data``
(:class:`~p3d_lightning.data.VideoDataModule`), ``trainer``, ``run`` (the run folder, below),
``checkpoint`` (Lightning's ``ModelCheckpoint``: the best by ``val/video_acc1``),
``last_checkpoint`` (:class:`~p3d_lightning.resume.LastCheckpoint`: ``last.ckpt``, the latest
training state, written at every validation end, epoch end, every
``last_checkpoint.every_n_train_steps`` steps and at the end) and ``features`` (the
:class:`~p3d_lightning.features.FeatureWriter` used by ``predict``). ``num_classes`` is
written once, in ``data``, and linked to ``model.num_classes``. ``trainer.precision``
defaults to :func:`~p3d_lightning.precision.default_precision` (``bf16-mixed`` where the CPU or
GPU runs bf16 natively); set ``trainer.precision: 32-true`` to switch it off.

**Run folders.** Every run lives in ``<run.root>/<run.name>/<version>/`` (default
``runs/<name>/version_<n>/``): ``run.json`` (name, version, W&B run id), ``config.yaml``
(the resolved config of the first fit), ``checkpoints/`` (``last.ckpt``, ``best-step<N>.ckpt``),
``logs/<command>[-<n>]/`` (CSV ``metrics.csv`` and that command's ``config.yaml``),
``wandb/`` and ``features/``. A ``fit`` without ``--ckpt_path`` starts a new version;
``--ckpt_path last`` / ``best`` pick the newest version of ``run.name`` that has one (or
``--run.version``), and the command then writes into that same folder. ``--ckpt_path`` given
as a file inside a run folder uses that run. Relative ``checkpoint.dirpath`` and
``features.output_dir`` are taken inside the run folder. ``fit`` and every resume of it log to
one W&B run (id in ``run.json``, ``resume="allow"``); ``validate``/``test``/``predict`` are W&B
runs of their own, ``job_type`` = the command, in the experiment's W&B group (as W&B's docs
recommend for evaluation jobs), with the training run's id in their config.
"""

from __future__ import annotations

import copy
import datetime as _dt
import glob
import json
import os
import re
import secrets
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

from p3d_lightning.features import FeatureWriter
from p3d_lightning.module import P3DClassifier
from p3d_lightning.precision import PrecisionUnsupportedError, check_training_precision, default_precision
from p3d_lightning.resume import LAST_NAME, LastCheckpoint, make_resumable

__all__ = [
    "P3DLightningCLI", "WandbConfigCallback", "main", "instantiate_from_config", "apply_overrides", "CHECKPOINT_DEFAULTS",
    "CheckpointError", "RunFolder", "check_checkpoint", "find_best_checkpoint", "load_experiment",
]

#: Defaults of the ``checkpoint`` section: the best by video top-1 (last.ckpt is ``last_checkpoint``'s).
CHECKPOINT_DEFAULTS: Dict[str, Any] = {
    "monitor": "val/video_acc1",
    "mode": "max",
    "save_last": False,
    "save_top_k": 1,
    "filename": "best-step{step}",
    "auto_insert_metric_name": False,
}
#: Default step cadence of last.ckpt.
LAST_EVERY_N_STEPS = 100
_VERSION_RE = re.compile(r"^version_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or read; the message names the file."""


def check_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) or raise :class:`CheckpointError` naming it."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any failure: truncated zip, bad pickle, foreign objects)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = ("it holds Python objects other than tensors and plain containers, which this project "
                      "never writes; it was not loaded (loading it would run arbitrary code)")
        else:
            reason = f"it is truncated or not a PyTorch checkpoint ({type(err).__name__}: {first[:200]})"
        raise CheckpointError(f"cannot read checkpoint {path!r}: {reason}") from None


def find_best_checkpoint(ckpt_dir: Union[str, os.PathLike]) -> Optional[str]:
    """The best-by-metric checkpoint in ``ckpt_dir``: the one ``last.ckpt`` records, else the only ``best*.ckpt``."""
    ckpt_dir = str(ckpt_dir)
    last = os.path.join(ckpt_dir, LAST_NAME)
    if os.path.isfile(last):
        state = check_checkpoint(last)
        for key, cb in (state.get("callbacks") or {}).items():
            if str(key).startswith("ModelCheckpoint") and isinstance(cb, dict) and cb.get("best_model_path"):
                best = str(cb["best_model_path"])
                for candidate in (best, os.path.join(ckpt_dir, os.path.basename(best))):
                    if os.path.isfile(candidate):
                        return candidate
    found = sorted(glob.glob(os.path.join(ckpt_dir, "best*.ckpt")))
    return found[0] if len(found) == 1 else None


class RunFolder:
    """``<root>/<name>/<version>/`` of one run, and the choice of it for a command.

    Args:
        root: folder of all experiments (``run.root``, default ``runs``).
        name: experiment name (``run.name``).
        version: folder name inside ``<root>/<name>`` (``version_<n>``).
    """

    def __init__(self, root: str, name: str, version: str) -> None:
        self.root, self.name, self.version = os.path.abspath(str(root)), str(name), str(version)
        self.path = os.path.join(self.root, self.name, self.version)

    # ------------------------------------------------------------------ layout
    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @property
    def info_path(self) -> str:
        return os.path.join(self.path, "run.json")

    def info(self) -> Dict[str, Any]:
        if not os.path.isfile(self.info_path):
            return {}
        with open(self.info_path) as f:
            return json.load(f)

    def write_info(self, **updates: Any) -> Dict[str, Any]:
        info = {**self.info(), **updates}
        os.makedirs(self.path, exist_ok=True)
        tmp = self.info_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp, self.info_path)
        return info

    def wandb_id(self) -> str:
        """The W&B run id of this run's ``fit`` (created once, kept in ``run.json``)."""
        info = self.info()
        if not info.get("wandb_id"):
            info = self.write_info(wandb_id=f"{_slug(self.name)[:40]}-{secrets.token_hex(4)}")
        return str(info["wandb_id"])

    def log_version(self, command: str) -> str:
        """``<command>`` for the first such command in this run, then ``<command>-2``, ..."""
        logs = os.path.join(self.path, "logs")
        n, version = 1, command
        while os.path.exists(os.path.join(logs, version)):
            n += 1
            version = f"{command}-{n}"
        return version

    # ------------------------------------------------------------------ choice
    @staticmethod
    def versions(root: str, name: str) -> List[str]:
        """Existing ``version_<n>`` folders of an experiment, oldest first."""
        folder = os.path.join(root, name)
        found = [(int(m.group(1)), d) for d in (os.listdir(folder) if os.path.isdir(folder) else [])
                 if (m := _VERSION_RE.match(d)) and os.path.isdir(os.path.join(folder, d))]
        return [d for _, d in sorted(found)]

    @classmethod
    def new(cls, root: str, name: str) -> "RunFolder":
        existing = cls.versions(root, name)
        n = int(_VERSION_RE.match(existing[-1]).group(1)) + 1 if existing else 0
        return cls(root, name, f"version_{n}")

    @classmethod
    def of_checkpoint(cls, ckpt_path: str) -> Optional["RunFolder"]:
        """The run folder holding ``ckpt_path`` (``<run>/checkpoints/x.ckpt``, ``<run>/x.ckpt``), if any."""
        here = Path(ckpt_path).resolve().parent
        for run in (here.parent, here):
            if (run / "run.json").is_file():
                return cls(str(run.parent.parent), run.parent.name, run.name)
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "run"


def _class_name(logger_cfg: Any) -> str:
    return str(logger_cfg.get("class_path", "") if hasattr(logger_cfg, "get") else "").rsplit(".", 1)[-1]


def _as_list(value: Any) -> List[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _follow_model_arch(cfg: Any) -> None:
    """``data.arch`` unset means "the model's": write it so, so that Lightning's merge of module and
    data-module hyperparameters (logged together) sees one value."""
    try:
        if cfg.get("data.arch", "absent") is None and cfg.get("model.arch"):
            cfg["data.arch"] = cfg["model.arch"]
    except (KeyError, AttributeError, TypeError):
        pass


class WandbConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` in the log folder (and, on the first fit, in the run folder) and the
    resolved config into every W&B run."""

    run_dir: Optional[str] = None

    def save_config(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False)) or {}
        resolved = {k: v for k, v in resolved.items() if k != "config"}
        if self.run_dir and stage == "fit":
            path = os.path.join(self.run_dir, "config.yaml")
            if not os.path.exists(path):
                os.makedirs(self.run_dir, exist_ok=True)
                with open(path, "w") as f:
                    yaml.safe_dump(resolved, f, sort_keys=False)
        for logger in (lg for lg in trainer.loggers if isinstance(lg, _LightningWandbLogger)):
            try:
                logger.experiment.config.update({"cli": resolved}, allow_val_change=True)
            except AttributeError:  # disabled/dummy experiment
                pass


class P3DLightningCLI(LightningCLI):
    """LightningCLI with the project's links, defaults and run folders (see the module docstring).

    After construction, ``run_folder`` is the :class:`RunFolder` of the command (``None`` when
    built with ``run=False``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args and "model_class" not in kwargs:
            kwargs["model_class"] = P3DClassifier
        if len(args) < 2 and "datamodule_class" not in kwargs:
            from p3d_lightning.data import VideoDataModule

            kwargs["datamodule_class"] = VideoDataModule
        kwargs.setdefault("save_config_callback", WandbConfigCallback)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        self.run_folder: Optional[RunFolder] = None
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.every_n_train_steps": LAST_EVERY_N_STEPS})
        parser.add_lightning_class_args(FeatureWriter, "features")
        parser.add_argument("--run.name", type=Optional[str], default=None,
                            help="experiment name: the run folder is <run.root>/<run.name>/<version> "
                                 "(default: the name of the config's first logger, else the config file's name)")
        parser.add_argument("--run.root", type=str, default="runs", help="folder of all run folders")
        parser.add_argument("--run.version", type=Optional[str], default=None,
                            help="use this version folder (default: new for fit, the newest with the "
                                 "checkpoint for --ckpt_path last/best)")
        parser.set_defaults({"trainer.precision": default_precision()})
        parser.link_arguments("data.num_classes", "model.num_classes")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            # FeatureWriter streams per-batch outputs to disk; do not also keep them all in memory
            parser.set_defaults({"return_predictions": False})
        return parser

    # ------------------------------------------------------------------ run folder + ckpt_path
    def _parse_ckpt_path(self) -> None:
        """Choose the run folder, resolve ``--ckpt_path last|best`` in it and check the file."""
        subcommand = self.config.get("subcommand")
        if subcommand:
            cfg = self.config[subcommand]
            self.run_folder, ckpt = self._choose_run(cfg, subcommand)
            cfg["ckpt_path"] = ckpt
            if ckpt is not None:
                check_checkpoint(ckpt)
        super()._parse_ckpt_path()

    def _experiment_name(self, cfg: Any) -> str:
        if cfg.get("run.name"):
            return _slug(cfg["run.name"])
        for lg in _as_list(cfg.get("trainer.logger")):
            name = lg.get("init_args", {}).get("name") if hasattr(lg, "get") else None
            if name:
                return _slug(name)
        configs = cfg.get("config") or []
        if configs:
            first = configs[0]
            path = str(getattr(first, "absolute", None) or getattr(first, "relative", None) or first)
            return _slug(Path(path).stem)
        return "p3d"

    def _choose_run(self, cfg: Any, subcommand: str) -> Tuple[RunFolder, Optional[str]]:
        root, name, version = str(cfg.get("run.root") or "runs"), self._experiment_name(cfg), cfg.get("run.version")
        ckpt = cfg.get("ckpt_path")
        dirpath = cfg.get("checkpoint.dirpath")

        def ckpt_dir(run: RunFolder) -> str:
            return dirpath if dirpath and os.path.isabs(dirpath) else os.path.join(run.path, dirpath or "checkpoints")

        def find(run: RunFolder, which: str) -> Optional[str]:
            folder = ckpt_dir(run)
            if which == "last":
                path = os.path.join(folder, LAST_NAME)
                return path if os.path.isfile(path) else None
            return find_best_checkpoint(folder)

        if ckpt in ("last", "best"):
            candidates = [version] if version else list(reversed(RunFolder.versions(root, name)))
            for v in candidates:
                run = RunFolder(root, name, v)
                found = find(run, ckpt)
                if found:
                    return run, found
            where = os.path.join(root, name, version or "version_*")
            if ckpt == "last" and subcommand == "fit":
                warnings.warn(f"--ckpt_path last: no last.ckpt under {where}; starting a new run", UserWarning)
                return (RunFolder(root, name, version) if version else RunFolder.new(root, name)), None
            raise CheckpointError(
                f"--ckpt_path {ckpt}: no {'last.ckpt' if ckpt == 'last' else 'best-by-metric checkpoint'} under "
                f"{where}/checkpoints" + (" (validation never ran, so there is no best yet; try --ckpt_path last)"
                                          if ckpt == "best" and candidates else "")
                + f"; run `p3d fit` with this config (run.name={name!r}) first, or pass a checkpoint file")
        if version:
            return RunFolder(root, name, version), ckpt
        if ckpt:
            run = RunFolder.of_checkpoint(ckpt)
            if run is not None:
                return run, ckpt
        return RunFolder.new(root, name), ckpt

    def before_instantiate_classes(self) -> None:
        """Point checkpoints, logs, W&B and features of this command into its run folder."""
        super().before_instantiate_classes()
        subcommand = self.config.get("subcommand")
        _follow_model_arch(self.config[subcommand] if subcommand else self.config)
        sub_cfg = self.config[subcommand] if subcommand else self.config
        # a precision this machine cannot run (bf16 on an AVX2-only CPU) is refused here, at
        # parse time, naming the option, instead of inside oneDNN at the first forward pass
        check_training_precision(sub_cfg.get("trainer.precision"), sub_cfg.get("trainer.accelerator"))
        if self.run_folder is None:
            return
        cfg = self.config[subcommand]
        run = self.run_folder
        os.makedirs(run.path, exist_ok=True)
        info = run.write_info(name=run.name, version=run.version, path=os.path.abspath(run.path))
        attempts = list(info.get("commands") or [])
        attempts.append({"command": subcommand, "ckpt_path": cfg.get("ckpt_path"),
                         "started": _dt.datetime.now().isoformat(timespec="seconds")})
        run.write_info(commands=attempts)

        def inside(value: Optional[str], default: str) -> str:
            value = value or default
            return value if os.path.isabs(value) else os.path.join(run.path, value)

        cfg["checkpoint.dirpath"] = inside(cfg.get("checkpoint.dirpath"), "checkpoints")
        cfg["last_checkpoint.dirpath"] = inside(cfg.get("last_checkpoint.dirpath"), cfg["checkpoint.dirpath"])
        cfg["features.output_dir"] = inside(cfg.get("features.output_dir"), "features")
        if cfg.get("checkpoint.save_last"):
            warnings.warn("checkpoint.save_last is ignored: last.ckpt is written by last_checkpoint "
                          "(every validation, epoch end and last_checkpoint.every_n_train_steps)", UserWarning)
            cfg["checkpoint.save_last"] = False
        if not cfg.get("trainer.default_root_dir"):
            cfg["trainer.default_root_dir"] = run.path
        log_version = run.log_version(subcommand)
        for lg in _as_list(cfg.get("trainer.logger")):
            kind, args = _class_name(lg), lg.get("init_args")
            if args is None:
                continue
            if kind == "CSVLogger":
                args["save_dir"], args["name"], args["version"] = run.path, "logs", log_version
            elif kind == "WandbLogger":
                args["save_dir"] = run.path
                if subcommand == "fit":
                    args["version"] = run.wandb_id()
                    if "job_type" in args:
                        args["job_type"] = "train"
                else:
                    args["version"] = f"{run.wandb_id()}-{log_version}"
                    args["name"] = f"{args.get('name') or run.name}-{log_version}"
                    if "job_type" in args:
                        args["job_type"] = subcommand
                    if "config" in args:
                        args["config"] = {**(args.get("config") or {}), "train_run_id": run.wandb_id(),
                                          "ckpt_path": cfg.get("ckpt_path")}
                if "group" in args and not args.get("group"):
                    args["group"] = run.name
        self._log_version = log_version

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        make_resumable(self.datamodule)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> Dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("ckpt_path"):
            kwargs["weights_only"] = True  # checkpoints hold tensors and plain containers only
        return kwargs

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the trainer and make sure a CSV logger is written next to any other logger."""
        trainer = super().instantiate_trainer(**kwargs)
        loggers = list(trainer.loggers)
        if loggers and not any(isinstance(lg, CSVLogger) for lg in loggers):
            if self.run_folder is not None:
                csv = CSVLogger(save_dir=self.run_folder.path, name="logs", version=getattr(self, "_log_version", None))
            else:
                csv = CSVLogger(save_dir=getattr(loggers[0], "save_dir", None) or trainer.default_root_dir, name="csv")
            trainer.loggers = [csv] + loggers
        for cb in trainer.callbacks:
            if isinstance(cb, WandbConfigCallback) and self.run_folder is not None:
                cb.run_dir = self.run_folder.path
        return trainer


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


def load_experiment(
    raw: Union[Dict[str, Any], str], source: str = "<config>",
    overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[P3DClassifier, Any, Dict[str, Any], Dict[str, Any]]:
    """Parse a complete experiment config: ``(model, datamodule, trainer_kwargs, resolved)``.

    As :func:`instantiate_from_config`, plus ``resolved``: the whole config after defaults,
    links and overrides, as plain data (every section, ``trainer`` included), for W&B and the
    run's records.
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
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False)) or {}
    resolved = {k: v for k, v in resolved.items() if k != "config"}
    return cli.model, make_resumable(cli.datamodule), trainer_kwargs, resolved


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
    model, datamodule, trainer_kwargs, _ = load_experiment(raw, source, overrides)
    return model, datamodule, trainer_kwargs


def _own_wandb_service() -> None:
    """Start this command's own W&B service instead of attaching to a parent's.

    wandb exports ``WANDB_SERVICE`` from any Python process that started a run (a notebook, a
    test runner, a driver script); a ``p3d`` launched from it would otherwise attach to that
    long-lived service, and after a ``kill -9`` the killed command's run stays registered there:
    the resume then fails with "run ID ... is in use".
    """
    os.environ.pop("WANDB_SERVICE", None)


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point ``p3d`` (``p3d --help``, ``p3d fit --help``).

    A missing or unreadable checkpoint exits with status 2 and a message naming the file.
    """
    _own_wandb_service()
    try:
        P3DLightningCLI(args=list(args) if args is not None else None)
    except (CheckpointError, PrecisionUnsupportedError) as err:
        print(f"p3d: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
