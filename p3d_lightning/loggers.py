"""Experiment loggers: Weights & Biases (online when logged in, offline otherwise) plus CSV.

The W&B mode is chosen without any prompt or network access:

- ``WANDB_MODE`` in the environment wins when the requested mode is ``auto``
  (``disabled`` in tests, ``offline``/``online`` to force one);
- otherwise ``online`` when the user is logged in: ``WANDB_API_KEY`` is set or the netrc file
  (``$NETRC`` or ``~/.netrc``) has an entry for the W&B host (``wandb login`` writes it);
- otherwise ``offline``: the run is written under ``<save_dir>/wandb/offline-run-*`` and can be
  uploaded later with ``wandb sync <that folder>``.

A CSV logger is always written as well, so every metric can be read back without W&B.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlparse

import yaml
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning import Trainer
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

__all__ = ["WandbLogger", "make_loggers", "resolve_wandb_mode", "wandb_logged_in", "WANDB_MODES", "wandb_dir",
           "log_summary_to_wandb", "finish_wandb", "log_table_to_wandb"]

WANDB_MODES = ("auto", "online", "offline", "disabled")


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
    W&B group; W&B files go to ``<save_dir>/wandb``; no console output from wandb; and after
    every checkpoint save the run summary records ``checkpoint/best_model_path``,
    ``checkpoint/last_model_path`` and ``checkpoint/best_model_score``.

    Args:
        project: W&B project.
        name: run name (W&B display name).
        group: W&B group (e.g. the ablation name).
        save_dir: folder for the W&B run files (created if missing).
        mode: ``auto``, ``online``, ``offline`` or ``disabled``.
        tags: W&B tags.
        job_type: W&B job type (``train``, ``eval``, ...).
        version: W&B run id to resume an existing run.
        log_model: upload checkpoints as artifacts (online only).
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
        Path(save_dir).mkdir(parents=True, exist_ok=True)
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
                return _LightningWandbLogger.experiment.fget(self)
            except Exception as err:  # wandb raises a plain ServerResponseError
                if "is in use" not in str(err) or time.monotonic() > deadline:
                    raise
                reaped = _stop_orphaned_wandb_services()
                if reaped:
                    print(f"[p3d] W&B run id in use by the service of a killed process; stopped "
                          f"{reaped} orphaned wandb-core process(es) and retrying", file=sys.stderr)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)

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
        WandbLogger(
            project=project,
            name=name,
            group=group,
            save_dir=save_dir,
            mode=mode,
            config=config,
            tags=list(tags) if tags else None,
            version=version,
            job_type=job_type,
        )
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


def wandb_group_rows(spec: str, api: Any = None) -> List[Dict[str, Any]]:
    """An ablation's result rows read back from the runs of its W&B group.

    Args:
        spec: ``ENTITY/PROJECT/GROUP`` (what follows ``wandb:`` in a notebook's source).
        api: a ``wandb.Api``-like object (tests pass a fake); default ``wandb.Api()``, which
            needs a logged-in, online W&B.

    Each run whose summary carries ``ablation/*`` keys (as the ablation runner logs them) gives
    one row, keys without the prefix; runs without an ``ablation/model`` (the group's table
    run) are skipped. Raises ``ValueError`` when ``spec`` is not three non-empty parts.
    """
    parts = spec.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"W&B source must be 'wandb:ENTITY/PROJECT/GROUP', got 'wandb:{spec}'")
    entity, project, group = parts
    if api is None:
        import wandb  # only here: the API client is needed by nothing else in this module

        api = wandb.Api()
    rows = []
    for run in api.runs(f"{entity}/{project}", filters={"group": group}):
        summary = dict(run.summary)
        row = {k[len("ablation/"):]: v for k, v in summary.items() if k.startswith("ablation/")}
        if row.get("model"):
            rows.append(row)
    return rows


def _wandb_loggers(loggers: Sequence[Logger]) -> List[_LightningWandbLogger]:
    """The W&B loggers among ``loggers`` that log somewhere (a disabled run has no files)."""
    return [lg for lg in loggers
            if isinstance(lg, _LightningWandbLogger) and getattr(lg, "mode", "") != "disabled"]


def wandb_dir(loggers: Sequence[Logger]) -> str:
    """The local folder of the W&B run among ``loggers`` ("" when there is none or it is disabled)."""
    for logger in _wandb_loggers(loggers)[:1]:
        try:
            return str(getattr(logger.experiment, "dir", "") or "")
        except Exception:  # a run that could not start has no directory; the caller records ""
            return ""
    return ""


def log_summary_to_wandb(loggers: Sequence[Logger], values: Dict[str, Any], prefix: str = "") -> None:
    """Put ``values`` (``None`` left out) in the summary of every W&B run among ``loggers``, keys
    prefixed; a logging failure is a warning, never the loss of a finished run."""
    for logger in _wandb_loggers(loggers):
        try:
            logger.experiment.summary.update({f"{prefix}{k}": v for k, v in values.items() if v is not None})
        except Exception as err:
            print(f"[p3d] warning: could not write the W&B summary: {err}", file=sys.stderr)


def finish_wandb() -> None:
    """Finish this process's current W&B run, if any (several runs share one ablation process)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def log_table_to_wandb(save_dir: os.PathLike, *, project: str, group: str, mode: str, name: str,
                       columns: Sequence[str], data: Sequence[Sequence[Any]],
                       images: Optional[Dict[str, os.PathLike]] = None,
                       summary: Optional[Dict[str, Any]] = None, job_type: str = "table") -> None:
    """One W&B run ``name`` in ``group`` holding a table (``table1``), images and summary values.

    Nothing happens when the resolved ``mode`` is ``disabled``; run files go under ``save_dir``.
    """
    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return
    import wandb

    run = wandb.init(project=project, group=group, name=name, job_type=job_type, dir=str(save_dir),
                     mode=resolved, reinit="finish_previous", settings=wandb.Settings(silent=True))
    try:
        logged: Dict[str, Any] = {"table1": wandb.Table(columns=list(columns), data=[list(r) for r in data])}
        logged.update({key: wandb.Image(str(path)) for key, path in (images or {}).items()})
        run.log(logged)
        run.summary.update(summary or {})
    finally:
        run.finish()
