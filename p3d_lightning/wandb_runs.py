"""What the project writes into W&B runs besides Lightning's metrics, and reads back.

Summaries (the ablation's ``ablation/*`` row), artifacts (checkpoints, ``results.csv``; offline
runs stage them in their own folder, so ``wandb sync`` uploads them later), the ablation's table
run (a typed ``wandb.Table``, a native scatter chart, the figure, the results artifact) and an
ablation's rows read back from its W&B group. Every helper takes the loggers or the run it writes
to; a disabled run is left alone, and a summary or artifact that cannot be written is a warning,
never the loss of a finished run. The logger itself, the mode and the tags are in
:mod:`p3d_lightning.loggers`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from p3d_lightning.loggers import resolve_wandb_mode, wandb_root

__all__ = ["finish_wandb", "log_artifact", "log_artifact_to_wandb", "log_summary_to_wandb", "log_table_to_wandb",
           "wandb_dir", "wandb_group_rows"]


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
        import wandb

        api = wandb.Api()
    rows = []
    for run in api.runs(f"{entity}/{project}", filters={"group": group}):
        summary = dict(run.summary)
        row = {k[len("ablation/"):]: v for k, v in summary.items() if k.startswith("ablation/")}
        if row.get("model"):
            rows.append(row)
    return rows


def _wandb_loggers(loggers: Sequence[Any]) -> List[Any]:
    """The W&B loggers among ``loggers`` that log somewhere (a disabled run has no files)."""
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger) and getattr(lg, "mode", "") != "disabled"]


def wandb_dir(loggers: Sequence[Any]) -> str:
    """The local folder of the W&B run among ``loggers`` ("" when there is none or it is disabled)."""
    for logger in _wandb_loggers(loggers)[:1]:
        try:
            return str(getattr(logger.experiment, "dir", "") or "")
        except Exception:  # a run that could not start has no directory; the caller records ""
            return ""
    return ""


def log_summary_to_wandb(loggers: Sequence[Any], values: Dict[str, Any], prefix: str = "") -> None:
    """Put ``values`` (``None`` left out) in the summary of every W&B run among ``loggers``, keys
    prefixed; a logging failure is a warning, never the loss of a finished run."""
    for logger in _wandb_loggers(loggers):
        try:
            logger.experiment.summary.update({f"{prefix}{k}": v for k, v in values.items() if v is not None})
        except Exception as err:
            print(f"[p3d] warning: could not write the W&B summary: {err}", file=sys.stderr)


def log_artifact(run: Any, name: str, kind: str, files: Mapping[str, Any],
                 metadata: Optional[Mapping[str, Any]] = None, aliases: Sequence[str] = ("latest",)) -> bool:
    """Log ``files`` (name in the artifact -> local path; missing ones left out) as the artifact
    ``name`` of type ``kind`` in ``run``; False when none of the files exists.

    Offline, W&B would stage its copy of each file under ``$WANDB_DATA_DIR``
    (``~/.local/share/wandb``), outside the run; the copy is made here, in the offline run's own
    folder (``offline-run-*/artifacts/<name>/``), so the folder is self-contained and
    ``wandb sync`` uploads the artifact from it. Online runs use W&B's own staging (removed after
    the upload).
    """
    import wandb

    present = {key: Path(path) for key, path in files.items() if path and Path(path).is_file()}
    if not present:
        return False
    artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", name), type=kind,
                              metadata={k: v for k, v in (metadata or {}).items() if v is not None})
    staging = Path(run.dir).parent / "artifacts" / artifact.name if run.offline else None
    for key, path in present.items():
        if staging is None:
            artifact.add_file(str(path), name=key)
            continue
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staging / key)
        artifact.add_file(str(staging / key), name=key, policy="immutable")  # the copy above is the snapshot
    run.log_artifact(artifact, aliases=list(aliases))
    return True


@contextlib.contextmanager
def _staging_in_run(run: Any) -> Iterator[None]:
    """While logging to an offline ``run``, W&B stages the copies it uploads later (a table's own
    ``run_table`` artifact) in the offline run's folder instead of ``$WANDB_DATA_DIR``, so the
    folder is self-contained (a ``WANDB_DATA_DIR`` set by the user is left as it is). W&B reads
    the variable when it copies, during ``run.log``."""
    if not run.offline or os.environ.get("WANDB_DATA_DIR"):
        yield
        return
    os.environ["WANDB_DATA_DIR"] = str(Path(run.dir).parent)
    try:
        yield
    finally:
        os.environ.pop("WANDB_DATA_DIR", None)


def log_artifact_to_wandb(loggers: Sequence[Any], name: str, kind: str, files: Mapping[str, Any],
                          metadata: Optional[Mapping[str, Any]] = None, aliases: Sequence[str] = ("latest",)) -> None:
    """:func:`log_artifact` in every W&B run among ``loggers``; a failure is a warning, never the
    loss of a finished run."""
    for logger in _wandb_loggers(loggers):
        try:
            log_artifact(logger.experiment, name, kind, files, metadata, aliases)
        except Exception as err:
            print(f"[p3d] warning: could not log the W&B artifact {name}: {err}", file=sys.stderr)


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
                       summary: Optional[Dict[str, Any]] = None, job_type: str = "table",
                       tags: Optional[Sequence[str]] = None, config: Optional[Dict[str, Any]] = None,
                       scatter: Optional[Tuple[str, str, str]] = None,
                       files: Optional[Mapping[str, Any]] = None, artifact_type: str = "results",
                       tables: Optional[Mapping[str, Tuple[Sequence[str], Sequence[Sequence[Any]]]]] = None) -> None:
    """One W&B run ``name`` in ``group`` holding a table (``table1``), images and summary values.

    ``data`` holds typed cells (numbers, ``None``, text), so W&B can sort and plot the columns.
    ``scatter`` = ``(x, y, title)`` adds a native W&B scatter chart of two of the table's
    columns, logged as ``<y>_vs_<x>``; ``files`` are logged as the artifact ``name`` of type
    ``artifact_type`` (see :func:`log_artifact`); ``tables`` = ``{key: (columns, data)}`` logs
    more tables beside ``table1`` (the ablation's across-seeds summary). Nothing happens when the resolved ``mode`` is
    ``disabled``; run files go under :func:`wandb_root` of ``save_dir``.
    """
    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return
    import wandb

    run = wandb.init(project=project, group=group, name=name, job_type=job_type, dir=wandb_root(save_dir),
                     mode=resolved, reinit="finish_previous", tags=list(tags) if tags else None,
                     config=config, settings=wandb.Settings(silent=True))
    try:
        table = wandb.Table(columns=list(columns), data=[list(r) for r in data])
        logged: Dict[str, Any] = {"table1": table}
        for key, (cols, rows) in (tables or {}).items():
            logged[key] = wandb.Table(columns=list(cols), data=[list(r) for r in rows])
        if scatter is not None:
            x, y, title = scatter
            logged[f"{y}_vs_{x}"] = wandb.plot.scatter(table, x, y, title=title)
        logged.update({key: wandb.Image(str(path)) for key, path in (images or {}).items() if os.path.isfile(path)})
        with _staging_in_run(run):
            run.log(logged)
        run.summary.update(summary or {})
        try:
            log_artifact(run, name, artifact_type, files or {})
        except Exception as err:  # the table is logged; losing the copy of its files is not fatal
            print(f"[p3d] warning: could not log the W&B artifact {name}: {err}", file=sys.stderr)
    finally:
        run.finish()
