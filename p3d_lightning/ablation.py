"""The paper's Table 1 as a command: train and evaluate ResNet-50, P3D-A, P3D-B, P3D-C and the
mixed P3D ResNet with identical data, seed and schedule, then write the table.

Usage::

    p3d-ablation                                   # synthetic motion set, the main job
    p3d-ablation --config experiments/ablation_ucf101.yaml --models p3d_a p3d
    p3d-ablation --output runs/my_ablation --set data.root=/data/UCF101

An ablation config is a small YAML file::

    name: table1_synthetic            # W&B group and default output folder name
    output_dir: runs/ablation_synthetic
    runs:                             # Table 1 row -> a complete experiment config
      resnet50: synthetic/resnet50.yaml
      p3d_a: synthetic/p3d_a.yaml
    overrides: {}                     # dotted keys applied to every run (e.g. data.root)
    speed: {batch_size: 8, fast_path: true, paper_scale: true}

What it writes in the output folder, as each run finishes (so an interrupted ablation loses
nothing): ``results.csv`` (one row per model, replaced atomically), ``table.md`` (ours beside
the paper's numbers, clearly labelled), ``accuracy_vs_speed.png``, and per model
``runs/<model>/`` with checkpoints (``last.ckpt``), CSV logs and the W&B run. Re-running skips
models already in ``results.csv`` and resumes an unfinished one from its ``last.ckpt``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from p3d_lightning.paper import PAPER_SPEED_NOTE, TABLE1

__all__ = [
    "AblationConfig",
    "load_ablation_config",
    "run_ablation",
    "read_results",
    "write_markdown_table",
    "plot_accuracy_vs_speed",
    "main",
    "RESULT_FIELDS",
    "to_float",
]

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
DEFAULT_CONFIG = REPO_ROOT / "experiments" / "ablation_synthetic.yaml"

#: Columns of ``results.csv``, in order.
RESULT_FIELDS = [
    "model",
    "arch",
    "params",
    "size_mb",
    "gmacs_per_clip",
    "clip_shape",
    "clip_acc1",
    "clip_acc5",
    "video_acc1",
    "video_acc5",
    "infer_clips_per_s",
    "infer_frames_per_s",
    "infer_device",
    "infer_precision",
    "infer_batch_size",
    "infer_threads",
    "fast_path_top1_agreement",
    "fast_path_max_rel_logit_diff",
    "paper_scale_shape",
    "paper_scale_clips_per_s",
    "paper_scale_frames_per_s",
    "paper_scale_precision",
    "paper_scale_batch_size",
    "train_clips_per_s",
    "train_steps",
    "train_time_s",
    "checkpoint",
    "wandb_dir",
    "finished_at",
]


class AblationError(ValueError):
    """Bad ablation input, reported before any training starts."""


@dataclass
class AblationConfig:
    """A parsed ablation config (see the module docstring for the YAML form)."""

    name: str
    runs: Dict[str, Path]
    output_dir: Path
    overrides: Dict[str, Any] = field(default_factory=dict)
    speed: Dict[str, Any] = field(default_factory=dict)
    source: Optional[Path] = None


def load_ablation_config(path: os.PathLike) -> AblationConfig:
    """Read an ablation YAML; run configs are resolved relative to the YAML's folder."""
    path = Path(path)
    if not path.is_file():
        raise AblationError(f"ablation config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise AblationError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), dict) or not raw["runs"]:
        raise AblationError(f"{path}: expected a mapping with a non-empty 'runs: {{model: config.yaml}}'")
    unknown = set(raw) - {"name", "runs", "output_dir", "overrides", "speed"}
    if unknown:
        raise AblationError(f"{path}: unknown keys {sorted(unknown)}; expected name, runs, output_dir, overrides, speed")
    runs = {}
    for model, cfg in raw["runs"].items():
        cfg_path = Path(cfg)
        if not cfg_path.is_absolute():
            cfg_path = path.parent / cfg_path
        runs[str(model)] = cfg_path
    name = str(raw.get("name") or path.stem)
    return AblationConfig(
        name=name,
        runs=runs,
        output_dir=Path(raw.get("output_dir") or Path("runs") / name),
        overrides=dict(raw.get("overrides") or {}),
        speed=dict(raw.get("speed") or {}),
        source=path,
    )


# --------------------------------------------------------------------------------------
# results files
# --------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_results(path: os.PathLike) -> List[Dict[str, str]]:
    """Rows of a ``results.csv`` written by the runner (empty list if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_results(path: Path, rows: List[Dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt_csv(row.get(k)) for k in RESULT_FIELDS})
    _atomic_write(path, buf.getvalue().encode())


def _fmt_csv(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def to_float(value: Any) -> Optional[float]:
    """A CSV cell as a float, or ``None`` when it is empty, not a number or NaN."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def write_markdown_table(rows: Sequence[Dict[str, Any]], path: Optional[os.PathLike] = None) -> str:
    """Table 1 in Markdown: our measured numbers beside the paper's (labelled as the paper's)."""
    lines = [
        "| Method | Params | Size (MB) | GMACs/clip | Speed, trained net | Speed, paper-scale net | "
        "Clip top-1 | Video top-1 | Paper: size | Paper: speed | Paper: top-1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        model = row["model"]
        paper = TABLE1.get(model)
        name = paper.method if paper else model
        frames = str(row.get("clip_shape", "")).split("x")[1:2] == ["1"]

        def speed(prefix: str) -> str:
            clips = to_float(row.get(f"{prefix}_clips_per_s"))
            if clips is None:
                return "-"
            if frames:
                return f"{to_float(row.get(f'{prefix}_frames_per_s')):.1f} frame/s"
            return f"{clips:.1f} clip/s"

        def pct(key: str) -> str:
            v = to_float(row.get(key))
            return "-" if v is None else f"{100 * v:.1f}%"

        params = to_float(row.get("params"))
        size = to_float(row.get("size_mb"))
        gmacs = to_float(row.get("gmacs_per_clip"))
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    "-" if params is None else f"{params / 1e6:.2f} M",
                    "-" if size is None else f"{size:.1f}",
                    "-" if gmacs is None else f"{gmacs:.3g}",
                    speed("infer"),
                    speed("paper_scale"),
                    pct("clip_acc1"),
                    pct("video_acc1"),
                    f"{paper.size_mb:.0f}" if paper else "-",
                    f"{paper.speed} {paper.speed_unit}" if paper else "-",
                    f"{paper.top1}%" if paper else "-",
                ]
            )
            + " |"
        )
    if rows:
        first = rows[0]
        scales = []
        for row in rows:
            if row.get("paper_scale_shape"):
                desc = (f"{row['paper_scale_shape']} ({row.get('paper_scale_precision') or '?'}, "
                        f"batch {row.get('paper_scale_batch_size') or '?'})")
                if desc not in scales:
                    scales.append(desc)
        lines += [
            "",
            f"Ours: speed on {first.get('infer_device', '?')}, {first.get('infer_precision', '?')}, "
            f"batch {first.get('infer_batch_size', '?')}, {first.get('infer_threads', '?')} threads; "
            "paper-scale = the full-size architecture of the row at "
            f"{' / '.join(scales) if scales else '-'}. "
            "Accuracy is on the dataset of this ablation, not UCF101 unless it says so.",
            f"Paper columns: Table 1 of Qiu et al. (ICCV 2017), UCF101 split 1; {PAPER_SPEED_NOTE}.",
        ]
    text = "\n".join(lines) + "\n"
    if path is not None:
        _atomic_write(Path(path), text.encode())
    return text


def plot_accuracy_vs_speed(rows: Sequence[Dict[str, Any]], path: os.PathLike, title: str = "") -> Path:
    """Accuracy vs clips/s: ours (left) and the paper's Table 1 (right), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ours, ax_paper) = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in rows:
        frames = str(row.get("clip_shape", "")).split("x")[1:2] == ["1"]
        speed = to_float(row.get("paper_scale_clips_per_s")) or to_float(row.get("infer_clips_per_s"))
        if frames:  # a 16-frame clip costs 16 frames for the frame-level baseline
            fps = to_float(row.get("paper_scale_frames_per_s")) or to_float(row.get("infer_frames_per_s"))
            speed = fps / 16 if fps else None
        acc = to_float(row.get("video_acc1"))
        if speed is None or acc is None:
            continue
        ax_ours.scatter(speed, 100 * acc, s=60)
        ax_ours.annotate(row["model"], (speed, 100 * acc), textcoords="offset points", xytext=(5, 4))
    speed_kind = "paper-scale" if rows and to_float(rows[0].get("paper_scale_clips_per_s")) else "trained"
    ax_ours.set_xlabel(f"clips/s ({speed_kind} net; ResNet-50: frames/s / 16)")
    ax_ours.set_ylabel("video top-1 (%)")
    ax_ours.set_title(f"Ours: {title}" if title else "Ours")
    ax_ours.grid(alpha=0.3)
    for model, paper in TABLE1.items():
        speed = paper.speed / 16 if paper.speed_unit == "frame/s" else paper.speed
        ax_paper.scatter(speed, paper.top1, s=60, marker="s")
        ax_paper.annotate(model, (speed, paper.top1), textcoords="offset points", xytext=(5, 4))
    ax_paper.set_xlabel("clips/s (ResNet-50: frames/s / 16)")
    ax_paper.set_ylabel("top-1 (%)")
    ax_paper.set_title("Paper's Table 1 (UCF101 split 1)")
    ax_paper.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _atomic_write(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------


def _check_output_dir(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise AblationError(f"output folder {output} is not writable: {err}") from err


def _fast_path_agreement(module: Any, datamodule: Any, max_batches: Optional[int] = None) -> Dict[str, Any]:
    """Top-1 agreement of the fast path (what the speed column times) with plain fp32 on the test
    clips (the first ``max_batches`` test batches; all of them when None)."""
    import torch

    from p3d_lightning.speed.numerics import compare_fast_path

    with torch.inference_mode():
        cmp = compare_fast_path(module.model, datamodule.test_dataloader(),
                                device=next(module.model.parameters()).device,
                                max_batches=max_batches)
    return {"fast_path_top1_agreement": cmp["top1_agreement"],
            "fast_path_max_rel_logit_diff": cmp["max_rel_diff"]}


def _paper_scale_speed(arch: str, in_channels: int, speed_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Inference speed of the full-size architecture at the paper's input, on this machine."""
    from p3d_lightning.speed.config import SpeedConfig
    from p3d_lightning.speed.inference import paper_scale_speed

    out = paper_scale_speed(arch, in_channels, SpeedConfig.from_mapping(speed_cfg))
    return {
        "paper_scale_shape": "x".join(str(s) for s in out.clip_shape),
        "paper_scale_clips_per_s": out.clips_per_s,
        "paper_scale_frames_per_s": out.frames_per_s,
        "paper_scale_precision": out.precision,
        "paper_scale_batch_size": out.batch_size,
    }


def _prepare_run(model_name: str, cfg_path: Path, overrides: Dict[str, Any]):
    """The run's LightningModule, DataModule, trainer settings and resolved config (a dict)."""
    from p3d_lightning.experiment import load_experiment

    if not cfg_path.is_file():
        raise AblationError(f"config for {model_name!r} not found: {cfg_path}")
    return load_experiment(str(cfg_path), overrides=overrides)


def run_ablation(
    config: AblationConfig,
    models: Optional[Sequence[str]] = None,
    output_dir: Optional[os.PathLike] = None,
    wandb_mode: str = "auto",
    wandb_project: str = "p3d-lightning",
    extra_overrides: Optional[Dict[str, Any]] = None,
    stop_after: Optional[int] = None,
    progress: bool = True,
) -> List[Dict[str, Any]]:
    """Run (or finish) an ablation and write its table. Returns the rows of ``results.csv``.

    Args:
        config: the parsed ablation config.
        models: a subset of ``config.runs`` (default: all, in the config's order).
        output_dir: where results go (default: ``config.output_dir``).
        wandb_mode: ``auto`` (online if logged in, else offline), ``online``, ``offline``,
            ``disabled``.
        extra_overrides: dotted keys applied to every run after the config's own overrides.
        stop_after: stop after this many newly trained models (used to test resuming).
        progress: show Lightning's progress bars.
    """
    import pytorch_lightning as pl

    from p3d_lightning.speed.callbacks import InferenceSpeedCallback, ModelStatsCallback, TrainThroughputCallback
    from p3d_lightning.loggers import make_loggers

    names = list(models) if models else list(config.runs)
    unknown = [m for m in names if m not in config.runs]
    if unknown:
        raise AblationError(
            f"unknown model(s) {unknown} for ablation {config.name!r}; this config defines {list(config.runs)}"
        )
    output = Path(output_dir or config.output_dir)
    _check_output_dir(output)
    overrides = {**config.overrides, **(extra_overrides or {})}
    results_path = output / "results.csv"
    rows = read_results(results_path)
    done = {r["model"] for r in rows}

    # Validate every pending run before any training: configs parse, data is there and non-empty.
    pending = []
    for name in names:
        if name in done:
            print(f"[ablation] {name}: already in {results_path}, skipping")
            continue
        try:
            module, datamodule, trainer_kwargs, resolved = _prepare_run(name, config.runs[name], overrides)
            datamodule.prepare_data()
            datamodule.setup("fit")
        except AblationError:
            raise
        except (ValueError, RuntimeError, OSError) as err:
            raise AblationError(f"{name} ({config.runs[name]}): {err}") from err
        n_train = len(datamodule.train_dataset)
        if n_train == 0:
            raise AblationError(f"{name}: the training set of {config.runs[name]} is empty (root: {_dm_root(datamodule)})")
        pending.append((name, module, datamodule, trainer_kwargs, resolved))

    speed_cfg = {"batch_size": 8, "fast_path": True, "paper_scale": True, **config.speed}
    trained = 0
    for position, (name, module, datamodule, trainer_kwargs, resolved) in enumerate(pending):
        from p3d_lightning.runs import RunFolder
        from p3d_lightning.resume import LastCheckpoint

        run = RunFolder(str(output), "runs", name)  # <output>/runs/<model>/, W&B id in its run.json
        run_dir = Path(run.path)
        ckpt_dir = run_dir / "checkpoints"
        last = ckpt_dir / "last.ckpt"
        pl.seed_everything(int(trainer_kwargs.pop("seed_everything", 0) or 0), workers=True)
        wandb_id = run.wandb_id() if _is_rank_zero() else None
        loggers = make_loggers(
            save_dir=str(run_dir),
            name=name,
            group=config.name,
            project=wandb_project,
            mode=wandb_mode,
            version=wandb_id,
            job_type="train",
            config={"ablation": config.name, "model": name, "config_file": str(config.runs[name]), "cli": resolved},
        )
        stats = ModelStatsCallback()
        infer = InferenceSpeedCallback(
            batch_size=int(speed_cfg["batch_size"]),
            fast_path=bool(speed_cfg["fast_path"]),
            warmup=int(speed_cfg.get("warmup", 2)),
            repeats=int(speed_cfg.get("repeats", 5)),
        )
        throughput = TrainThroughputCallback()
        checkpoint = pl.callbacks.ModelCheckpoint(  # the best by val/video_acc1 (kept for reference)
            dirpath=str(ckpt_dir),
            filename="best-{step}",
            monitor="val/video_acc1",
            mode="max",
            save_last=False,
            save_top_k=1,
        )
        last_every = int((resolved.get("last_checkpoint") or {}).get("every_n_train_steps") or 0)
        last_checkpoint = LastCheckpoint(dirpath=str(ckpt_dir), every_n_train_steps=last_every)
        kwargs = dict(trainer_kwargs)
        kwargs.pop("logger", None)
        # the config's own trainer.callbacks; the list also holds the defaults Lightning added when
        # load_experiment built its trainer (progress bar, summary), which this trainer adds itself
        # (and the CLI's checkpoint / last_checkpoint / features sections): this runner sets its own
        extra_callbacks = [cb for cb in (kwargs.pop("callbacks", None) or [])
                           if not type(cb).__module__.startswith(("pytorch_lightning.", "lightning."))
                           and not isinstance(cb, (pl.callbacks.Checkpoint, pl.callbacks.BasePredictionWriter))]
        kwargs.pop("default_root_dir", None)
        if not progress:
            kwargs["enable_progress_bar"] = False
        trainer = pl.Trainer(
            **kwargs,
            default_root_dir=str(run_dir),
            logger=loggers,
            callbacks=[*extra_callbacks, checkpoint, last_checkpoint, stats, infer, throughput],
        )
        resume_from = str(last) if last.is_file() else None
        if resume_from:
            from p3d_lightning.runs import check_checkpoint

            try:
                check_checkpoint(resume_from)
            except ValueError as err:
                raise AblationError(f"{name}: {err}; delete it to retrain {name} from scratch") from err
        print(f"[ablation] {name}: training ({'resuming from ' + resume_from if resume_from else 'from scratch'})")
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True if resume_from else None)
        train_time = time.perf_counter() - start
        if last_checkpoint._last_saved is None or last_checkpoint._last_saved[0] != trainer.global_step:
            last_checkpoint.save(trainer, "final")  # the row names the checkpoint of the network it tests
        # The paper tests the final network (the one in last.ckpt); val is only a monitor.
        test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
        if not trainer.is_global_zero:  # other DDP ranks took part in fit/test; rank zero writes
            _finish_wandb()
            trained += 1
            if stop_after is not None and trained >= stop_after:
                return []
            continue
        row: Dict[str, Any] = {
            "model": name,
            "arch": module.hparams.get("arch", name),
            **stats.results,
            "clip_shape": "x".join(map(str, stats.results["clip_shape"])),
            "clip_acc1": test_metrics.get("test/clip_acc1"),
            "clip_acc5": test_metrics.get("test/clip_acc5"),
            "video_acc1": test_metrics.get("test/video_acc1"),
            "video_acc5": test_metrics.get("test/video_acc5"),
            **{k: infer.results.get(k) for k in infer.results},
            **throughput.results,
            "train_steps": trainer.global_step,
            "train_time_s": train_time,
            "checkpoint": str(last),
            "wandb_dir": _wandb_dir(loggers),
            "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        if speed_cfg.get("fast_path", True):  # the speed column's numerics, on this run's test clips
            agree_batches = speed_cfg.get("agreement_batches", 8)
            row.update(_fast_path_agreement(module, datamodule,
                                            None if agree_batches in (None, "all") else int(agree_batches)))
        if speed_cfg.get("paper_scale", True):
            arch = str(row["arch"])
            in_ch = int(str(row.get("clip_shape", "3")).split("x")[0])
            row.update(_paper_scale_speed(arch, in_ch, speed_cfg))
        _log_summary_to_wandb(loggers, row)
        _finish_wandb()
        rows = [r for r in read_results(results_path) if r["model"] != name] + [row]
        _write_results(results_path, rows)
        _write_outputs(output, rows, config.name)
        print(f"[ablation] {name}: video top-1 {100 * float(row['video_acc1'] or 0):.1f}% -> {results_path}")
        trained += 1
        if stop_after is not None and trained >= stop_after and position < len(pending) - 1:
            print(f"[ablation] stopping after {trained} model(s) as asked; re-run to finish")
            return read_results(results_path)

    if not _is_rank_zero():
        return []
    rows = read_results(results_path)
    order = {m: i for i, m in enumerate(config.runs)}
    rows.sort(key=lambda r: order.get(r["model"], len(order)))
    _write_results(results_path, rows)
    _write_outputs(output, rows, config.name)
    _log_table_to_wandb(output, rows, config.name, wandb_project, wandb_mode)
    return rows


def _is_rank_zero() -> bool:
    """True in the process of global rank zero (and without DDP); Lightning's launcher sets RANK/LOCAL_RANK."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0) == 0 and \
        int(os.environ.get("NODE_RANK", 0) or 0) == 0


def _dm_root(datamodule: Any) -> str:
    return str(getattr(datamodule, "root", None) or getattr(datamodule, "hparams", {}).get("root", "?"))


def _wandb_dir(loggers: Sequence[Any]) -> str:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            if getattr(logger, "mode", "") == "disabled":
                return ""
            try:
                run = logger.experiment
                return str(getattr(run, "dir", "") or "")
            except Exception:  # disabled runs have no directory
                return ""
    return ""


def _log_summary_to_wandb(loggers: Sequence[Any], row: Dict[str, Any]) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            if getattr(logger, "mode", "") == "disabled":
                return ""
            try:
                logger.experiment.summary.update({f"ablation/{k}": v for k, v in row.items() if v is not None})
            except Exception as err:  # never lose a finished run over a logging problem
                print(f"[ablation] warning: could not write the W&B summary: {err}", file=sys.stderr)


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


def _write_outputs(output: Path, rows: List[Dict[str, Any]], title: str) -> None:
    write_markdown_table(rows, output / "table.md")
    plot_accuracy_vs_speed(rows, output / "accuracy_vs_speed.png", title=title)


def _log_table_to_wandb(output: Path, rows: List[Dict[str, Any]], group: str, project: str, mode: str) -> None:
    """One summary run in the ablation's W&B group holding the table and the plot."""
    from p3d_lightning.loggers import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return
    import wandb

    run = wandb.init(
        project=project,
        group=group,
        name=f"{group}-table",
        job_type="ablation-table",
        dir=str(output),
        mode=resolved,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True),
    )
    try:
        table = wandb.Table(columns=RESULT_FIELDS, data=[[r.get(k, "") for k in RESULT_FIELDS] for r in rows])
        run.log({"table1": table, "accuracy_vs_speed": wandb.Image(str(output / "accuracy_vs_speed.png"))})
        run.summary["results_csv"] = str(output / "results.csv")
    finally:
        run.finish()


def _parse_set(items: Sequence[str]) -> Dict[str, Any]:
    from p3d_lightning.experiment import parse_overrides

    try:
        return parse_overrides(items)
    except ValueError as err:
        raise AblationError(str(err)) from err


#: ``p3d-ablation --quick``: every run shrunk to a smoke test of the whole pipeline (train, test,
#: speed, table, plot, W&B) in about a minute on a 2-core CPU; the shipped configs are unchanged.
QUICK_OVERRIDES: Dict[str, Any] = {
    "model.width_mult": 0.0625, "data.resize": [40, 52], "data.crop_size": 32, "data.num_eval_clips": 1,
    "trainer.max_steps": 20, "trainer.check_val_every_n_epoch": 1,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point ``p3d-ablation``."""
    parser = argparse.ArgumentParser(prog="p3d-ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="ablation YAML (default: the synthetic one)")
    parser.add_argument("--models", nargs="+", help="subset of the config's runs, in order")
    parser.add_argument("--output", help="output folder (default: the config's output_dir)")
    parser.add_argument("--wandb", default="auto", choices=["auto", "online", "offline", "disabled"])
    parser.add_argument("--project", default="p3d-lightning", help="W&B project")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override every run's config")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: a smoke run of the whole pipeline (tiny nets, 32 px crops, "
                             f"{QUICK_OVERRIDES['trainer.max_steps']} steps, no paper-scale speed) into "
                             "<output_dir>_quick; its accuracies mean nothing")
    args = parser.parse_args(argv)
    from p3d_lightning.loggers import own_wandb_service as _own_wandb_service
    from p3d_lightning.precision import PrecisionUnsupportedError

    _own_wandb_service()

    try:
        config = load_ablation_config(args.config)
        extra = _parse_set(args.set)
        output_dir = args.output
        if args.quick:
            extra = {**QUICK_OVERRIDES, **extra}
            config.speed = {**config.speed, "paper_scale": False, "warmup": 1, "repeats": 2,
                            "agreement_batches": 2}
            output_dir = output_dir or str(config.output_dir) + "_quick"
        rows = run_ablation(
            config,
            models=args.models,
            output_dir=output_dir,
            wandb_mode=args.wandb,
            wandb_project=args.project,
            extra_overrides=extra,
            progress=not args.no_progress,
        )
    except (AblationError, PrecisionUnsupportedError) as err:
        print(f"p3d-ablation: error: {err}", file=sys.stderr)
        return 2
    output = Path(output_dir or config.output_dir)
    print()
    print(write_markdown_table(rows))
    print(f"results CSV : {output / 'results.csv'}")
    print(f"table       : {output / 'table.md'}")
    print(f"plot        : {output / 'accuracy_vs_speed.png'}")
    print(f"W&B runs    : {output / 'runs'}/<model>/wandb  (offline runs: `wandb sync <run dir>`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
