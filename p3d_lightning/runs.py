"""Run folders: ``<run.root>/<run.name>/version_<n>/``, the choice of one for a command, and
``--ckpt_path last|best`` resolved inside it (layout described in :mod:`p3d_lightning.experiment`)."""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from p3d_lightning.models.weights import CheckpointError
from p3d_lightning.resume import LAST_NAME

__all__ = ["CheckpointError", "RunFolder", "check_checkpoint", "choose_run", "experiment_name",
           "find_best_checkpoint", "point_into_run"]

_VERSION_RE = re.compile(r"^version_(\d+)$")


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

    def wandb_id(self, label: Optional[str] = None) -> str:
        """The W&B run id of this run's ``fit`` (created once, kept in ``run.json``), starting
        with ``label`` (default: the experiment's name; an ablation passes its run's name)."""
        info = self.info()
        if not info.get("wandb_id"):
            if label is None:  # the ablation's <output>/runs/<model>/ folders: the model
                label = self.name if _VERSION_RE.match(self.version) else self.version
            info = self.write_info(wandb_id=f"{_slug(label)[:40]}-{secrets.token_hex(4)}")
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


def experiment_name(cfg: Any) -> str:
    """``run.name``, else the first logger's ``name``, else the config file's stem, else ``p3d``."""
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

def choose_run(cfg: Any, subcommand: str) -> Tuple[RunFolder, Optional[str]]:
    """The run folder of a command and its ``ckpt_path`` with ``last``/``best`` resolved in it."""
    root, name, version = str(cfg.get("run.root") or "runs"), experiment_name(cfg), cfg.get("run.version")
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


def point_into_run(cfg: Any, run: RunFolder, subcommand: str) -> str:
    """Point checkpoints, features, CSV and W&B loggers of one command's config (``cfg``, the
    subcommand's section) into ``run``; records the command in ``run.json``. Returns the log
    version (``<command>[-<n>]``)."""
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
                args["name"] = args.get("name") or run.name  # the experiment's name, not a random one
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
    return log_version
