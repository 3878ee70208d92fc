"""Run (or finish) an ablation: for each Table 1 row, instantiate, fit, test, measure, collect.

Every pending run is instantiated and its data opened before any training starts, so a bad
config, an empty dataset or an unwritable output folder fails at once. Each finished model's
row goes into ``results.csv`` (:mod:`~p3d_lightning.ablation.results`) and the table and plot
are redrawn (:mod:`~p3d_lightning.ablation.table`), so an interrupted ablation loses nothing:
re-running skips models already in ``results.csv`` and resumes an unfinished one exactly from
its ``last.ckpt``, in the same W&B run.

With ``seeds`` in the config (or ``--seeds``), each model trains once per seed, seed by seed
(every model at the first seed, then the next seed), each (model, seed) its own run folder
``runs/<model>/seed<s>/``, row in ``results.csv`` and W&B run; resuming works per seed. The
paper-scale speed does not depend on the weights and is measured at the first seed only.
"""
from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from p3d_lightning.ablation.config import AblationConfig, AblationError
from p3d_lightning.ablation.progress import AblationProgress, checkpoint_step
from p3d_lightning.ablation.results import RESULT_FIELDS, read_results, record, row_key, update_results
from p3d_lightning.ablation.seeds import PAIRED_FIELDS, SUMMARY_FIELDS, is_multi_seed, paired_comparisons, summarize
from p3d_lightning.ablation.table import write_outputs

__all__ = ["run_ablation"]


def _label(name: str, seed: Optional[int]) -> str:
    """``p3d_a`` or, with seeds, ``p3d_a/seed1``: a run in the progress lines."""
    return name if seed is None else f"{name}/seed{seed}"


class _Run(NamedTuple):
    """One Table 1 row at one seed, instantiated and checked: what fit and test need."""

    name: str
    config_file: Path
    module: Any
    datamodule: Any
    trainer_kwargs: Dict[str, Any]
    resolved: Dict[str, Any]
    seed: Optional[int] = None  # None: the config's own seed_everything, folder runs/<model>/
    first_seed: bool = True  # the paper-scale speed is measured at the first seed only

    @property
    def label(self) -> str:
        return _label(self.name, self.seed)

    def folder(self, output: Path):
        from p3d_lightning.runs import RunFolder

        if self.seed is None:
            return RunFolder(str(output), "runs", self.name)  # <output>/runs/<model>/
        return RunFolder(str(output / "runs"), self.name, f"seed{self.seed}")  # <output>/runs/<model>/seed<s>/


def run_ablation(
    config: AblationConfig,
    models: Optional[Sequence[str]] = None,
    output_dir: Optional[os.PathLike] = None,
    wandb_mode: str = "auto",
    wandb_project: str = "p3d-lightning",
    extra_overrides: Optional[Dict[str, Any]] = None,
    stop_after: Optional[int] = None,
    progress: bool = True,
    seeds: Optional[Sequence[int]] = None,
) -> List[Dict[str, Any]]:
    """Run (or finish) an ablation and write its table. Returns the rows of ``results.csv``.

    Args:
        config: the parsed ablation config.
        models: a subset of ``config.runs`` (default: all, in the config's order).
        output_dir: where results go (default: ``config.output_dir``).
        wandb_mode: ``auto`` (online if logged in, else offline), ``online``, ``offline``,
            ``disabled``.
        extra_overrides: dotted keys applied to every run after the config's own overrides.
        stop_after: stop after this many newly trained runs (used to test resuming).
        progress: show Lightning's progress bars.
        seeds: train each model once per seed (default: ``config.seeds``; ``None`` there too:
            once, with each run config's own ``seed_everything``).
    """
    from p3d_lightning.ablation.config import parse_seeds

    seeds = parse_seeds(list(seeds), None) if seeds is not None else config.seeds
    started = time.monotonic()  # elapsed counts the set-up (datasets opened, synthetic set made) too
    output = Path(output_dir or config.output_dir)
    results_path = output / "results.csv"
    overrides = {**config.overrides, **(extra_overrides or {})}
    names = _selected(config, models)
    units = [(name, seed) for seed in (seeds or [None]) for name in names]  # seed by seed
    pending = _instantiate(config, units, output, results_path, overrides, seeds)
    tracker = _progress([_label(n, s) for n, s in units], pending, output, started)
    if _is_rank_zero():
        what = f"{len(names)} model(s) x {len(seeds)} seeds" if seeds else f"{len(names)} model(s)"
        print(f"[ablation] {config.name}: {len(pending)} of {len(units)} run(s) to train ({what}); outputs in {output}")
    for position, run in enumerate(pending, start=1):
        if _is_rank_zero():
            print(tracker.start(run.label))
        run = _built(run, config, overrides)
        row = _fit_and_test(run, config, output, wandb_mode, wandb_project, progress)
        pending[position - 1] = run._replace(module=None, datamodule=None)  # trained: let it go
        if row is not None:  # global rank zero writes
            rows = update_results(results_path, row, order=list(config.runs))
            write_outputs(output, rows, config.name)
            print(f"[ablation] {run.label}: video top-1 {100 * float(row['video_acc1'] or 0):.1f}% -> {results_path}")
            print(tracker.finish(run.label, int(row["train_steps"]) - tracker.start_steps.get(run.label, 0)))
        if stop_after is not None and position >= stop_after:
            if row is None:
                return []
            if position < len(pending):
                print(f"[ablation] stopping after {position} model(s) as asked; re-run to finish")
                return read_results(results_path)
    if not _is_rank_zero():
        return []
    rows = update_results(results_path, order=list(config.runs))
    write_outputs(output, rows, config.name)
    from p3d_lightning.wandb_runs import log_table_to_wandb

    figure = output / "accuracy_vs_speed.png"
    tables, files = {}, {p.name: p for p in (results_path, output / "table.md", figure)}
    if is_multi_seed(rows):  # across seeds: per model mean/std/interval, and the paired comparisons
        tables = {"seeds_summary": (SUMMARY_FIELDS, [[s.get(k) for k in SUMMARY_FIELDS] for s in summarize(rows)]),
                  "seeds_paired": (PAIRED_FIELDS,
                                   [[p.get(k) for k in PAIRED_FIELDS] for p in paired_comparisons(rows)])}
        files.update({p.name: p for p in (output / "summary.csv", output / "paired.csv")})
    clip_length = output / "accuracy_vs_clip_length.png"
    log_table_to_wandb(output, project=wandb_project, group=config.name, mode=wandb_mode,
                       name=f"{config.name}-table", job_type="ablation-table", columns=RESULT_FIELDS,
                       data=[[r.get(k) for k in RESULT_FIELDS] for r in rows],  # numbers as numbers
                       scatter=("infer_clips_per_s", "video_acc1", "video top-1 vs inference clips/s"),
                       images={"accuracy_vs_speed": figure, "training_curves": output / "training_curves.png",
                               "accuracy_vs_clip_length": clip_length},
                       summary={"results_csv": str(results_path)}, tables=tables,
                       tags=["ablation", config.name], config=_wandb_config(config, output, overrides, seeds),
                       files={**files, **({clip_length.name: clip_length} if clip_length.is_file() else {})})
    return rows


def _progress(labels: Sequence[str], pending: Sequence[_Run], output: Path, started: float) -> AblationProgress:
    """The progress lines' state: each pending run's steps left (its ``max_steps`` less what its
    ``last.ckpt`` holds; unknown without ``max_steps``)."""
    start = {r.label: checkpoint_step(Path(r.folder(output).checkpoints) / "last.ckpt") for r in pending}
    left: Dict[str, Optional[int]] = {}
    for run in pending:
        max_steps = int(run.trainer_kwargs.get("max_steps") or -1)
        left[run.label] = max(0, max_steps - start[run.label]) if max_steps > 0 else None
    return AblationProgress(labels, left, start, started=started)


def _selected(config: AblationConfig, models: Optional[Sequence[str]]) -> List[str]:
    names = list(models) if models else list(config.runs)
    unknown = [m for m in names if m not in config.runs]
    if unknown:
        raise AblationError(
            f"unknown model(s) {unknown} for ablation {config.name!r}; this config defines {list(config.runs)}"
        )
    return names


def _instantiate(config: AblationConfig, units: Sequence[Tuple[str, Optional[int]]], output: Path,
                 results_path: Path, overrides: Dict[str, Any], seeds: Optional[Sequence[int]]) -> List[_Run]:
    """Every (model, seed) not yet in ``results.csv``. The first pending run of each model is
    built and its training data opened here, so a bad config or an empty dataset fails before
    any training; its other seeds (the same config but for the seed) are built just before they
    train (:func:`_built`), so N seeds do not hold N networks and datasets at once."""
    _check_output_dir(output)
    finished = read_results(results_path)
    # without seeds a model's row counts whatever its seed (files from before the seed column too)
    done = {row_key(r) for r in finished} if seeds else {(r["model"], None) for r in finished}
    pending: List[_Run] = []
    checked: Dict[str, _Run] = {}
    for name, seed in units:
        if (name, seed) in done:
            print(f"[ablation] {_label(name, seed)}: already in {results_path}, skipping")
            continue
        first_seed = seed is None or seed == seeds[0]
        if name in checked:  # built when its turn comes; its steps (progress lines) are the checked run's
            ref = checked[name]
            pending.append(_Run(name, ref.config_file, None, None, ref.trainer_kwargs, ref.resolved, seed,
                                first_seed=first_seed))
            continue
        checked[name] = _build(config, name, seed, overrides, first_seed)
        pending.append(checked[name])
    return pending


def _built(run: _Run, config: AblationConfig, overrides: Dict[str, Any]) -> _Run:
    """``run`` itself when instantiated, else built now (a later seed of a checked model)."""
    if run.module is not None:
        return run
    return _build(config, run.name, run.seed, overrides, run.first_seed)


def _build(config: AblationConfig, name: str, seed: Optional[int], overrides: Dict[str, Any],
           first_seed: bool) -> _Run:
    """Instantiate one (model, seed) from its config and open its training data."""
    from p3d_lightning.experiment import load_experiment

    cfg_path = config.runs[name]
    if not cfg_path.is_file():
        raise AblationError(f"config for {name!r} not found: {cfg_path}")
    # the seed sets the initial weights (seed_everything) and the training clips' order,
    # sampling and augmentation (the datamodule's seed); nothing else differs between seeds
    run_overrides = overrides if seed is None else {**overrides, "seed_everything": seed, "data.seed": seed}
    try:
        module, datamodule, trainer_kwargs, resolved = load_experiment(str(cfg_path), overrides=run_overrides)
        datamodule.prepare_data()
        datamodule.setup("fit")
    except AblationError:
        raise
    except (ValueError, RuntimeError, OSError) as err:
        raise AblationError(f"{name} ({cfg_path}): {err}") from err
    if len(datamodule.train_dataset) == 0:
        raise AblationError(f"{name}: the training set of {cfg_path} is empty (root: {_dm_root(datamodule)})")
    return _Run(name, cfg_path, module, datamodule, trainer_kwargs, resolved, seed, first_seed=first_seed)


def _fit_and_test(run: _Run, config: AblationConfig, output: Path, wandb_mode: str, wandb_project: str,
                  progress: bool) -> Optional[Dict[str, Any]]:
    """Train ``run`` (resuming from its ``last.ckpt``), test the final network, measure it; its
    results row on global rank zero, ``None`` on the other ranks."""
    import pytorch_lightning as pl

    from p3d_lightning.loggers import experiment_tags, make_loggers
    from p3d_lightning.wandb_runs import finish_wandb, log_artifact_to_wandb, log_summary_to_wandb, wandb_dir
    from p3d_lightning.speed.callbacks import InferenceSpeedCallback, ModelStatsCallback, TrainThroughputCallback

    folder = run.folder(output)  # <output>/runs/<model>/[seed<s>/], W&B id in its run.json
    run_dir = Path(folder.path)
    last = run_dir / "checkpoints" / "last.ckpt"
    kwargs = dict(run.trainer_kwargs)
    seed = int(kwargs.pop("seed_everything", 0) or 0)  # with seeds, load_experiment was given run.seed
    pl.seed_everything(seed, workers=True)
    seed_tags = [] if run.seed is None else [f"seed{run.seed}"]
    wandb_name = run.name if run.seed is None else f"{run.name}-seed{run.seed}"
    loggers = make_loggers(
        save_dir=str(run_dir), name=wandb_name, group=config.name, project=wandb_project, mode=wandb_mode,
        version=folder.wandb_id(wandb_name) if _is_rank_zero() else None,
        job_type="train", tags=[*experiment_tags(run.resolved), "ablation", config.name, *seed_tags],
        config={"ablation": config.name, "model": run.name, "ablation_seed": seed, "config_file": str(run.config_file),
                "cli": run.resolved},
    )
    stats, infer = ModelStatsCallback(), InferenceSpeedCallback(config=config.speed)
    throughput = TrainThroughputCallback()
    trainer, last_checkpoint = _trainer(kwargs, run, run_dir, loggers, [stats, infer, throughput], progress)
    resume_from = _resume_checkpoint(run.name, last)
    print(f"[ablation] {run.label}: training ({'resuming from ' + resume_from if resume_from else 'from scratch'})")
    start = time.perf_counter()
    trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=resume_from,
                weights_only=True if resume_from else None)
    train_time = time.perf_counter() - start
    if last_checkpoint._last_saved is None or last_checkpoint._last_saved[0] != trainer.global_step:
        last_checkpoint.save(trainer, "final")  # the row names the checkpoint of the network it tests
    # The paper tests the final network (the one in last.ckpt); val is only a monitor.
    test_metrics = trainer.test(run.module, datamodule=run.datamodule, verbose=False)[0]
    if not trainer.is_global_zero:  # other DDP ranks took part in fit/test; rank zero writes
        finish_wandb()
        return None
    row: Dict[str, Any] = {
        "model": run.name,
        "arch": run.module.hparams.get("arch", run.name),
        "seed": seed,
        **stats.results,
        **{k: test_metrics.get(f"test/{k}") for k in ("clip_acc1", "clip_acc5", "video_acc1", "video_acc5")},
        **infer.results,
        **throughput.results,
        "train_steps": trainer.global_step,
        "train_time_s": train_time,
        "checkpoint": str(last),
        "wandb_dir": wandb_dir(loggers),
        "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    row.update(_speed_columns(run, config, stats.stats.clip_shape))
    log_summary_to_wandb(loggers, record(row), prefix="ablation/")
    best = Path(trainer.checkpoint_callback.best_model_path or "")  # "" before any validation
    artifact = f"{config.name}-{run.name}" + ("" if run.seed is None else f"-seed{run.seed}")
    log_artifact_to_wandb(loggers, artifact, "model", {"last.ckpt": last, best.name: best},
                          metadata={"model": run.name, "arch": row["arch"], "seed": seed, "video_acc1": row["video_acc1"],
                                    "train_steps": row["train_steps"], "best": best.name or None})
    finish_wandb()
    return row


def _trainer(kwargs: Dict[str, Any], run: _Run, run_dir: Path, loggers: List[Any], measuring: List[Any],
             progress: bool):
    """The run's Trainer: the config's own trainer settings and callbacks, this runner's
    checkpoints (best by val/video_acc1 for reference, and last) and the measuring callbacks."""
    import pytorch_lightning as pl

    from p3d_lightning.resume import LastCheckpoint

    ckpt_dir = str(run_dir / "checkpoints")
    best = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="best-{step}", monitor="val/video_acc1",
                                        mode="max", save_last=False, save_top_k=1)
    last_every = int((run.resolved.get("last_checkpoint") or {}).get("every_n_train_steps") or 0)
    last_checkpoint = LastCheckpoint(dirpath=ckpt_dir, every_n_train_steps=last_every)
    for key in ("logger", "default_root_dir"):
        kwargs.pop(key, None)
    # the config's own trainer.callbacks; the list also holds the defaults Lightning added when
    # load_experiment built its trainer (progress bar, summary), which this trainer adds itself
    # (and the CLI's checkpoint / last_checkpoint / features sections): this runner sets its own
    own = [cb for cb in (kwargs.pop("callbacks", None) or [])
           if not type(cb).__module__.startswith(("pytorch_lightning.", "lightning."))
           and not isinstance(cb, (pl.callbacks.Checkpoint, pl.callbacks.BasePredictionWriter))]
    if not progress:
        kwargs["enable_progress_bar"] = False
    trainer = pl.Trainer(**kwargs, default_root_dir=str(run_dir), logger=loggers,
                         callbacks=[*own, best, last_checkpoint, *measuring])
    return trainer, last_checkpoint


def _resume_checkpoint(name: str, last: Path) -> Optional[str]:
    """``last.ckpt`` of an unfinished run when there is one; unreadable is an error naming it."""
    if not last.is_file():
        return None
    from p3d_lightning.runs import check_checkpoint

    try:
        check_checkpoint(str(last))
    except ValueError as err:
        raise AblationError(f"{name}: {err}; delete it to retrain {name} from scratch") from err
    return str(last)


def _speed_columns(run: _Run, config: AblationConfig, clip_shape: Sequence[int]) -> Dict[str, Any]:
    """The fast path's agreement with fp32 on this run's test clips (the numerics of the speed
    column) and the paper-scale speed, as the config's ``speed`` asks (at the first seed only:
    it does not depend on the weights). A clip model's paper-scale input has the run's own
    frames per clip, so a clip-length ablation measures each length at full size."""
    import torch

    from p3d_lightning.speed.inference import paper_scale_speed
    from p3d_lightning.speed.numerics import compare_fast_path

    speed = config.speed
    out: Dict[str, Any] = {}
    if speed.fast_path:
        model = run.module.model
        with torch.inference_mode():
            cmp = compare_fast_path(model, run.datamodule.test_dataloader(), device=next(model.parameters()).device,
                                    max_batches=speed.agreement_batches)
        out.update(fast_path_top1_agreement=cmp["top1_agreement"], fast_path_max_rel_logit_diff=cmp["max_rel_diff"])
    if speed.paper_scale and run.first_seed:
        frames = int(clip_shape[1]) if len(clip_shape) == 4 and int(clip_shape[1]) > 1 else None
        result = paper_scale_speed(str(run.module.hparams.get("arch", run.name)), int(clip_shape[0]), speed,
                                   clip_len=frames)
        out.update(result.columns("paper_scale"))
    return out


def _wandb_config(config: AblationConfig, output: Path, overrides: Dict[str, Any],
                  seeds: Optional[Sequence[int]]) -> Dict[str, Any]:
    """The ablation's own config, as this run applied it, for its W&B table run."""
    import dataclasses

    return {"ablation": {"name": config.name, "source": str(config.source or ""), "output_dir": str(output),
                         "runs": {k: str(v) for k, v in config.runs.items()}, "overrides": overrides,
                         "speed": dataclasses.asdict(config.speed), "seeds": list(seeds) if seeds else None}}


def _check_output_dir(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise AblationError(f"output folder {output} is not writable: {err}") from err


def _is_rank_zero() -> bool:
    """True in the process of global rank zero (and without DDP); Lightning's launcher sets RANK/LOCAL_RANK."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0) == 0 and \
        int(os.environ.get("NODE_RANK", 0) or 0) == 0


def _dm_root(datamodule: Any) -> str:
    return str(getattr(datamodule, "root", None) or getattr(datamodule, "hparams", {}).get("root", "?"))
