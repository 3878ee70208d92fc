"""Experiment loggers: Weights & Biases (online when logged in, offline otherwise) plus CSV.

The W&B mode is chosen without any prompt or network access:

- ``WANDB_MODE`` in the environment wins when the requested mode is ``auto``
  (``disabled`` in tests, ``offline``/``online`` to force one);
- otherwise ``online`` when the user is logged in: ``WANDB_API_KEY`` is set or the netrc file
  (``$NETRC`` or ``~/.netrc``) has an entry for the W&B host (``wandb login`` writes it);
- otherwise ``offline``: the run is written under ``<save_dir>/wandb/offline-run-*`` (or
  ``$WANDB_DIR/wandb/`` when ``WANDB_DIR`` is set) and can be uploaded later with
  ``wandb sync <that wandb folder>``.

Every run the project opens summarises accuracy as its best value and loss as its lowest
(:data:`METRIC_SUMMARIES`), is tagged with its architecture and dataset, and has a ``job_type``.
A CSV logger is always written as well, so every metric can be read back without W&B. What the
ablation writes into W&B runs besides metrics (summaries, artifacts, the table run) and reads
back is in :mod:`p3d_lightning.wandb_runs`.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import urlparse

import yaml
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning import Trainer
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

__all__ = ["WandbLogger", "WandbConfigCallback", "make_loggers", "own_wandb_service", "resolve_wandb_mode",
           "wandb_logged_in", "WANDB_MODES", "wandb_root", "METRIC_SUMMARIES", "experiment_tags"]

WANDB_MODES = ("auto", "online", "offline", "disabled")

#: How a metric is summarised in a W&B run: W&B keeps the last value by default, but the number
#: a researcher compares runs by is the best validation accuracy (and the lowest loss).
METRIC_SUMMARIES: Dict[str, str] = {
    **{f"{stage}/{name}": "max" for stage in ("val", "test")
       for name in ("clip_acc1", "clip_acc5", "video_acc1", "video_acc5")},
    **{name: "min" for name in ("train/loss_epoch", "val/loss", "test/loss")},
}


def wandb_root(save_dir: os.PathLike) -> str:
    """The folder that receives a run's ``wandb/`` folder: ``$WANDB_DIR`` when it is set (W&B's
    own variable, which an explicit ``dir`` would otherwise override), else ``save_dir``."""
    return os.environ.get("WANDB_DIR") or os.fspath(save_dir)


def experiment_tags(resolved: Mapping[str, Any]) -> List[str]:
    """W&B tags of an experiment: its ``model.arch`` and ``data.dataset`` (either may be missing)."""
    tags = []
    for section, key in (("model", "arch"), ("data", "dataset")):
        node = resolved.get(section) or {}
        node = node.get("init_args", node) if isinstance(node, dict) else {}
        if node.get(key):
            tags.append(str(node[key]))
    return tags


def _add_tags(run: Any, tags: Sequence[str]) -> None:
    run.tags = tuple(dict.fromkeys([*(run.tags or ()), *tags]))


def wandb_logged_in() -> bool:
    """True when W&B credentials exist locally (API key in the environment or a netrc entry).

    Only files and environment variables are read; nothing is sent over the network.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    candidates = [os.environ.get("NETRC"), str(Path.home() / ".netrc"), str(Path.home() / "_netrc")]
    for path in candidates:
        if not path or not os.path.isfile(path):
            continue
        try:
            if netrc.netrc(path).authenticators(host):
                return True
        except (netrc.NetrcParseError, OSError):
            continue
    return False


def resolve_wandb_mode(mode: str = "auto") -> str:
    """Map ``auto|online|offline|disabled`` to the mode passed to ``wandb.init``.

    ``auto`` honours ``WANDB_MODE`` (``dryrun`` means offline), then picks ``online`` when
    :func:`wandb_logged_in`, else ``offline``. An explicit mode is returned unchanged, except
    that ``WANDB_MODE=disabled`` always wins (tests and CI switch W&B off that way).
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"W&B mode must be one of {WANDB_MODES}, got {mode!r}")
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled":
        return "disabled"
    if mode != "auto":
        return mode
    if env in ("online", "offline"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if wandb_logged_in() else "offline"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with this project's defaults.

    Differences from the base class: ``mode`` (``auto`` by default, see
    :func:`resolve_wandb_mode`) instead of ``offline``; ``group`` so runs of one ablation share a
    W&B group; W&B files go to ``<save_dir>/wandb`` (``$WANDB_DIR/wandb`` when ``WANDB_DIR`` is
    set); no console output from wandb; accuracy and loss summarised as best and lowest
    (:data:`METRIC_SUMMARIES`); and after every checkpoint save the run summary records
    ``checkpoint/best_model_path``, ``checkpoint/last_model_path`` and ``checkpoint/best_model_score``.

    Args:
        project: W&B project.
        name: run name (W&B display name).
        group: W&B group (e.g. the ablation name).
        save_dir: folder for the W&B run files (created if missing); ``WANDB_DIR`` wins when set.
        mode: ``auto``, ``online``, ``offline`` or ``disabled``.
        tags: W&B tags.
        job_type: W&B job type (``train``, ``eval``, ...).
        version: W&B run id to resume an existing run.
        log_model: upload checkpoints as artifacts, as Lightning's ``log_model`` (``True``: at the
            end, ``"all"``: every save); online runs only, offline runs keep them in the run folder.
        config: extra values stored in the run's config.
        **kwargs: passed to ``wandb.init``.
    """

    def __init__(
        self,
        project: str = "p3d-lightning",
        name: Optional[str] = None,
        group: Optional[str] = None,
        save_dir: str = "logs",
        mode: str = "auto",
        tags: Optional[List[str]] = None,
        job_type: Optional[str] = None,
        version: Optional[str] = None,
        log_model: bool = False,
        config: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        self.mode = resolve_wandb_mode(mode)
        if log_model and self.mode != "online":
            log_model = False  # checkpoints cannot be uploaded from an offline or disabled run
        save_dir = wandb_root(save_dir)
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        self._summaries_defined = False
        try:
            import wandb

            kwargs.setdefault("settings", wandb.Settings(silent=True))
        except ImportError:  # the base class raises a clear error below
            pass
        super().__init__(
            name=name,
            save_dir=save_dir,
            version=version,
            project=project,
            log_model=log_model,
            group=group,
            mode=self.mode,
            tags=tags,
            job_type=job_type,
            config=config,
            **kwargs,
        )
        if self._wandb_init.get("anonymous") is None:
            # Lightning always passes anonymous=None, which wandb >= 0.19 answers with a warning on
            # every run ("The anonymous setting has no effect"); unset means the same, silently
            self._wandb_init.pop("anonymous", None)

    #: After a ``kill -9`` the killed process's W&B service can hold the run id for a few
    #: seconds ("run ID ... is in use"); a resume started at once waits for it this long.
    RUN_IN_USE_WAIT_S = 60.0

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run, started on first use; waits out a killed process's service that still
        holds the same run id (resume right after ``kill -9``) instead of failing."""
        import time

        deadline = time.monotonic() + self.RUN_IN_USE_WAIT_S
        delay = 0.5
        while True:
            try:
                run = _LightningWandbLogger.experiment.fget(self)
                break
            except Exception as err:  # wandb raises a plain ServerResponseError
                if "is in use" not in str(err) or time.monotonic() > deadline:
                    raise
                reaped = _stop_orphaned_wandb_services()
                if reaped:
                    print(f"[p3d] W&B run id in use by the service of a killed process; stopped "
                          f"{reaped} orphaned wandb-core process(es) and retrying", file=sys.stderr)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
        if not self._summaries_defined and self.mode != "disabled":
            self._summaries_defined = True
            for name, how in METRIC_SUMMARIES.items():  # the same x axis as Lightning's "*" rule
                run.define_metric(name, summary=how, step_metric="trainer/global_step", step_sync=True)
        return run

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Record the checkpoint paths (and upload them when ``log_model``)."""
        super().after_save_checkpoint(checkpoint_callback)
        if self.mode == "disabled":
            return
        summary = {
            "checkpoint/best_model_path": str(getattr(checkpoint_callback, "best_model_path", "") or ""),
            "checkpoint/last_model_path": str(getattr(checkpoint_callback, "last_model_path", "") or ""),
        }
        score = getattr(checkpoint_callback, "best_model_score", None)
        if score is not None:
            summary["checkpoint/best_model_score"] = float(score)
        try:
            self.experiment.summary.update(summary)
        except AttributeError:  # non-zero ranks hold a dummy experiment
            pass


def _stop_orphaned_wandb_services() -> int:
    """SIGTERM every ``wandb-core`` service whose parent (its ``--pid``) no longer exists.

    Such a service is left behind by a process killed with ``kill -9``; until it exits it holds
    its run id, so a resume of the same run cannot start. Linux only (reads ``/proc``); returns
    how many were stopped.
    """
    import signal

    stopped = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"wandb-core") or b"--pid" not in argv:
            continue
        try:
            parent = int(argv[argv.index(b"--pid") + 1])
        except (ValueError, IndexError):
            continue
        if parent > 0 and not (proc / str(parent)).exists():
            try:
                os.kill(int(entry.name), signal.SIGTERM)
                stopped += 1
            except OSError:
                pass
    return stopped


def make_loggers(
    save_dir: str = "logs",
    name: str = "p3d",
    group: Optional[str] = None,
    project: str = "p3d-lightning",
    mode: str = "auto",
    config: Optional[Dict[str, Any]] = None,
    tags: Optional[Sequence[str]] = None,
    csv: bool = True,
    version: Optional[str] = None,
    job_type: Optional[str] = None,
) -> List[Logger]:
    """The loggers of one run: ``[CSVLogger, WandbLogger]``.

    The CSV logger comes first, so ``trainer.log_dir`` (config.yaml, default checkpoint
    folder) is ``<save_dir>/<name>/version_<n>``; W&B files go to ``<save_dir>/wandb``.
    ``version`` is the W&B run id: pass the same id to continue the same W&B run after a
    resume (``resume="allow"``). Call ``wandb.finish()`` after the run when several runs share
    a process.
    """
    loggers: List[Logger] = []
    if csv:
        loggers.append(CSVLogger(save_dir=save_dir, name=name))
    loggers.append(
        WandbLogger(project=project, name=name, group=group, save_dir=save_dir, mode=mode, config=config,
                    tags=list(tags) if tags else None, version=version, job_type=job_type)
    )
    return loggers


def own_wandb_service() -> None:
    """Start this command's own W&B service instead of attaching to a parent's.

    wandb exports ``WANDB_SERVICE`` from any Python process that started a run (a notebook, a
    test runner, a driver script); a ``p3d`` launched from it would otherwise attach to that
    long-lived service, and after a ``kill -9`` the killed command's run stays registered there:
    the resume then fails with "run ID ... is in use".
    """
    os.environ.pop("WANDB_SERVICE", None)


class WandbConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` in the log folder (and, on the first fit, in the run folder) and the
    resolved config into every W&B run (under ``cli``), tagged with :func:`experiment_tags`."""

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
                _add_tags(logger.experiment, experiment_tags(resolved))
            except AttributeError:  # disabled/dummy experiment
                pass
