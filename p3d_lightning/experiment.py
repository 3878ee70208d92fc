"""The experiment schema: LightningCLI with the project's sections, links and run folders, the
config loader used by every tool, and overrides. The ``p3d`` command (:mod:`p3d_lightning.commands.p3d`)
is this CLI with fit / validate / test / predict (usage there).

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
from argparse import ArgumentError
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger

from p3d_lightning.features import FeatureWriter
from p3d_lightning.loggers import WandbConfigCallback
from p3d_lightning.module import P3DClassifier
from p3d_lightning.precision import check_training_precision, default_precision
from p3d_lightning.resume import LastCheckpoint, make_resumable
from p3d_lightning.runs import RunFolder, check_checkpoint, choose_run, point_into_run
from p3d_lightning.yamlfile import read_yaml_mapping

__all__ = [
    "CHECKPOINT_DEFAULTS", "ConfigError", "P3DLightningCLI", "check_clip_fits", "check_config_files", "parse_dotted_args", "read_config", "apply_overrides", "instantiate_from_config", "load_experiment",
    "load_run", "parse_overrides",
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


class ConfigError(ValueError):
    """A config value that cannot work, found when the config is read; the message names the option."""


def check_clip_fits(cfg: Any) -> None:
    """Refuse a data clip shape the network cannot take (``data.clip_len``, ``data.crop_size``
    against ``model.arch``), by a forward pass of the architecture on the ``meta`` device: no
    memory, no compute, the same shape arithmetic as the real network."""
    import torch

    from p3d_lightning.models import create_model

    arch, clip_len, crop = cfg.get("model.arch"), cfg.get("data.clip_len"), cfg.get("data.crop_size")
    if not arch or clip_len is None or crop is None:
        return
    if int(clip_len) < 1 or int(crop) < 1:
        raise ConfigError(f"data.clip_len={clip_len}, data.crop_size={crop}: both must be at least 1")
    channels = int(cfg.get("model.in_channels") or 3)
    try:
        with torch.device("meta"):
            net = create_model(arch, num_classes=2, in_channels=channels).eval()
            net(torch.empty(1, channels, int(clip_len), int(crop), int(crop)))
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"data.clip_len={clip_len} x data.crop_size={crop} is too small for model.arch={arch!r} "
                          f"({channels}-channel clips): {first[:200]}") from None


def _follow_model_arch(cfg: Any) -> None:
    """``data.arch`` unset means "the model's": write it so, so that Lightning's merge of module and
    data-module hyperparameters (logged together) sees one value."""
    try:
        if cfg.get("data.arch", "absent") is None and cfg.get("model.arch"):
            cfg["data.arch"] = cfg["model.arch"]
    except (KeyError, AttributeError, TypeError):
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
        # allow_abbrev off: argparse would otherwise take ``--trainer.max_step 5`` as max_steps
        kwargs["parser_kwargs"] = {"default_env": False, "allow_abbrev": False, **(kwargs.get("parser_kwargs") or {})}
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
            self.run_folder, ckpt = choose_run(cfg, subcommand)
            cfg["ckpt_path"] = ckpt
            if ckpt is not None:
                check_checkpoint(ckpt)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        """Point checkpoints, logs, W&B and features of this command into its run folder."""
        super().before_instantiate_classes()
        subcommand = self.config.get("subcommand")
        _follow_model_arch(self.config[subcommand] if subcommand else self.config)
        sub_cfg = self.config[subcommand] if subcommand else self.config
        # a precision this machine cannot run (bf16 on an AVX2-only CPU) is refused here, at
        # parse time, naming the option, instead of inside oneDNN at the first forward pass
        check_training_precision(sub_cfg.get("trainer.precision"), sub_cfg.get("trainer.accelerator"))
        check_clip_fits(sub_cfg)  # likewise a clip the network cannot take, before any logger starts
        if self.run_folder is None:
            return
        self._log_version = point_into_run(self.config[subcommand], self.run_folder, subcommand)

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


def parse_dotted_args(tokens: Sequence[str]) -> Dict[str, Any]:
    """``["--data.root", "/x", "--trainer.max_steps=10"]`` -> ``{"data.root": "/x", "trainer.max_steps": 10}``:
    ``p3d``'s override style for tools that take overrides for every run (values parsed as YAML).
    Raises ``ValueError`` naming the first token that is not ``--<section>.<key> [VALUE]``."""
    out: Dict[str, Any] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        key, eq, value = token[2:].partition("=")
        if not token.startswith("--") or "." not in key or not all(key.split(".")):
            raise ValueError(f"unrecognized argument {token!r}; overrides are written --<section>.<key> VALUE "
                             f"(e.g. --data.root /data/UCF-101)")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise ValueError(f"{token} expects a value")
            value, i = tokens[i + 1], i + 1
        out[key] = yaml.safe_load(value)
        i += 1
    return out


_CLASS_SECTIONS = ("model", "data")


def read_config(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """An experiment YAML as one dict, composed as ``p3d`` composes it.

    A variant file names its base in a top-level ``config:`` (a path relative to the variant,
    read first, recursively) and sets its own keys on top, written dotted
    (``model.arch: p3d_a``): ``p3d fit --config experiments/synthetic/p3d_a.yaml`` then means the
    same as ``--config experiments/synthetic/base.yaml --config experiments/synthetic/p3d_a.yaml``.
    A variant that writes ``model:`` or ``data:`` as a nested section is refused, naming the file:
    jsonargparse would replace the base's whole section with it, silently dropping its settings.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, ConfigError, "experiment config")
    bases = raw.pop("config", None)
    if bases is None:
        return raw
    nested = [k for k in _CLASS_SECTIONS if isinstance(raw.get(k), dict)]
    if nested:
        raise ConfigError(f"{path}: a variant of {bases} must write its {'/'.join(nested)} keys dotted "
                          f"({nested[0]}.<key>: value); a nested {nested[0]}: section replaces the base's whole "
                          f"section")
    if not isinstance(bases, str):
        raise ConfigError(f"{path}: config: names one base file (a path), got {bases!r}")
    base_path = Path(bases) if Path(bases).is_absolute() else path.parent / bases
    return apply_overrides(_flatten_class_sections(read_config(base_path)), raw)


def check_config_files(args: Sequence[str]) -> None:
    """Read every ``--config`` / ``-c`` file of a command line with :func:`read_config`, so that a
    missing base or a mis-written variant is reported naming the file before the CLI starts."""
    args = list(args)
    for flag, value in zip(args, args[1:] + [""]):
        for name in ("--config", "-c"):
            if flag == name and value.endswith((".yaml", ".yml")):
                read_config(value)
            elif flag.startswith(name + "=") and flag.endswith((".yaml", ".yml")):
                read_config(flag.split("=", 1)[1])


def load_experiment(
    raw: Union[Dict[str, Any], str], source: str = "<config>",
    overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[P3DClassifier, Any, Dict[str, Any], Dict[str, Any]]:
    """Parse a complete experiment config: ``(model, datamodule, trainer_kwargs, resolved)``.

    As :func:`instantiate_from_config`, plus ``resolved``: the whole config after defaults,
    links and overrides, as plain data (every section, ``trainer`` included), for W&B and the
    run's records.
    """
    if isinstance(raw, (str, os.PathLike)):
        source = str(raw)
        raw = read_config(raw)
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a YAML mapping with model/data/trainer sections")
    cfg = _flatten_class_sections(apply_overrides(copy.deepcopy(raw), overrides))
    try:
        with warnings.catch_warnings():  # args given in Python while sys.argv holds the caller's own
            warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
            # exit_on_error off: the problem comes back as an exception (named below after the
            # file), not as the p3d parser's usage printed under the calling tool's name
            cli = P3DLightningCLI(args=cfg, run=False, save_config_callback=None, parser_kwargs={"exit_on_error": False})
    except SystemExit as err:  # a parser that exits anyway has printed its reason on stderr
        raise ValueError(f"{source}: invalid experiment config (see the error above)") from err
    except ArgumentError as err:
        raise ValueError(f"{source}: {' '.join(str(err).split())}") from None
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


def load_run(
    checkpoint: Union[str, os.PathLike], config: Union[str, os.PathLike],
    overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[P3DClassifier, Any]:
    """A trained run for evaluation tools: ``(module, datamodule)``.

    ``module`` is the :class:`P3DClassifier` in ``checkpoint`` (loaded with ``weights_only=True``;
    a hostile or truncated file raises an error naming it), ``datamodule`` the data of the
    experiment YAML ``config`` with dotted ``overrides`` (``{"data.root": "/data/UCF101"}``).
    Raises ``FileNotFoundError`` naming whichever of the two files is missing.
    """
    from p3d_lightning.models.weights import load_module_checkpoint

    checkpoint, config = Path(checkpoint), Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"experiment config not found: {config}")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    _, datamodule, _ = instantiate_from_config(str(config), overrides=overrides)
    module = load_module_checkpoint(P3DClassifier, checkpoint, map_location="cpu")
    return module, datamodule
