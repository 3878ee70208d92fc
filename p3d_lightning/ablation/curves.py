"""Training curves from the CSV log every run writes: loss, validation accuracy and learning rate
against step, per run or overlaid for an ablation (one colour per model, as in the
accuracy-vs-speed figure). No W&B needed: an offline or CPU user has curves at once.

Where the logs are: a ``p3d fit`` run folder holds ``logs/fit[-<n>]/metrics.csv`` (one per fit
and resume of it); an ablation's ``<output>/runs/<model>/`` holds
``<model>/version_<n>/metrics.csv`` (likewise). All of a run's training logs are read, oldest
first, and a step logged twice (a resume re-running steps after its ``last.ckpt``) keeps the
later value. Logs of ``validate`` / ``test`` / ``predict`` are left out.

Usage::

    from p3d_lightning.ablation.curves import write_training_curves
    write_training_curves("runs/synthetic_p3d/version_0", "curves.png")          # one p3d fit run
    write_training_curves(ablation_runs("runs/ablation_synthetic"), "curves.png")  # overlaid
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from p3d_lightning.ablation.figures import (legend_handles, method_name, model_colours, new_figure, save_png,
                                            short_title)
from p3d_lightning.ablation.results import to_float
from p3d_lightning.paper import TABLE1

__all__ = ["ablation_runs", "seed_runs", "read_curves", "training_curves_figure", "training_logs", "write_training_curves"]

PathLike = Union[str, os.PathLike]
Curve = List[Tuple[int, float]]

#: The logged keys each panel draws (the module's ``self.log`` names). ``train/loss`` is logged
#: per step and per epoch, so Lightning's CSV calls them ``train/loss_step`` / ``train/loss_epoch``;
#: the epoch mean is the fallback of a run shorter than ``log_every_n_steps``.
TRAIN_LOSS = ("train/loss_step", "train/loss", "train/loss_epoch")
VAL_LOSS = "val/loss"
VAL_ACCURACY = "val/video_acc1"
LEARNING_RATE = "train/lr"
_NOT_TRAINING = ("validate", "test", "predict")


def training_logs(source: PathLike) -> List[Path]:
    """The training CSV logs of one run, oldest first: ``source`` is a ``metrics.csv`` or a run folder."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        return []
    found = [p for p in source.rglob("metrics.csv") if not p.parent.name.startswith(_NOT_TRAINING)]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def read_curves(source: PathLike) -> Dict[str, Curve]:
    """Every logged metric of a run as ``{key: [(step, value), ...]}``, sorted by step."""
    merged: Dict[str, Dict[int, float]] = {}
    for path in training_logs(source):
        with path.open(newline="") as f:
            for line in csv.DictReader(f):
                step = to_float(line.get("step"))
                if step is None:
                    continue
                for key, cell in line.items():
                    value = to_float(cell)
                    if key not in ("step", "epoch") and value is not None:
                        merged.setdefault(key, {})[int(step)] = value
    return {key: sorted(values.items()) for key, values in merged.items()}


def seed_runs(output: PathLike) -> Dict[str, Dict[Optional[int], Path]]:
    """``{model: {seed: folder}}`` of every ablation run with a CSV log, Table 1's order first:
    ``<output>/runs/<model>/seed<s>/`` of a multi-seed ablation (seeds ascending), else
    ``{None: <output>/runs/<model>}``."""
    root = Path(output) / "runs"
    if not root.is_dir():
        return {}
    found: Dict[str, Dict[Optional[int], Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        seeds = {int(p.name[4:]): p for p in folder.iterdir()
                 if p.is_dir() and p.name.startswith("seed") and p.name[4:].isdigit() and training_logs(p)}
        if seeds:
            found[folder.name] = dict(sorted(seeds.items()))
        elif training_logs(folder):
            found[folder.name] = {None: folder}
    order = [m for m in TABLE1 if m in found] + sorted(m for m in found if m not in TABLE1)
    return {m: found[m] for m in order}


def ablation_runs(output: PathLike) -> Dict[str, Path]:
    """``{model: <output>/runs/<model>}`` of every ablation run with a CSV log, Table 1's order
    first; of a multi-seed ablation, each model's lowest seed (``runs/<model>/seed<s>``)."""
    return {model: next(iter(seeds.values())) for model, seeds in seed_runs(output).items()}


def _as_runs(runs: Union[Mapping[str, PathLike], PathLike]) -> Dict[str, PathLike]:
    if isinstance(runs, Mapping):
        return dict(runs)
    path = Path(runs)
    folder = path.parent if path.is_file() else path
    # runs/<name>/version_<n>: the experiment's name says more than "version_0"
    label = f"{folder.parent.name}/{folder.name}" if folder.name.startswith("version_") else folder.name
    return {label: runs}


def _minor_label(value: float, _pos: Any = None) -> str:
    """Label the 2s, 3s and 5s between the decades of a log axis, plainly (``0.02``, ``30``)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ""


def _plot(ax: Any, curve: Curve, colour: str, scale: float = 1.0, **style: Any) -> None:
    if curve:
        steps, values = zip(*curve)
        marker = style.pop("marker", "." if len(curve) < 30 else None)
        ax.plot(steps, [scale * v for v in values], color=colour, marker=marker, markersize=4, **style)


def training_curves_figure(runs: Union[Mapping[str, PathLike], PathLike], title: str = "", figure: Any = None,
                           colours: Optional[Mapping[str, str]] = None):
    """Loss (train solid, val dashed), val video top-1 and learning rate against step. Returns the figure.

    Args:
        runs: ``{name: run folder or metrics.csv}`` (e.g. :func:`ablation_runs`), or one run folder.
        title: shown above the panels (a path is shortened to its last part).
        figure: draw into this figure (a notebook's ``plt.figure()``); default a new one without pyplot.
        colours: ``{name: colour}``; default :func:`~p3d_lightning.ablation.figures.model_colours`.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    runs = _as_runs(runs)
    colours = {**model_colours(runs), **(colours or {})}
    fig = new_figure((13, 4.4), figure)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3, sharex=True)  # one step axis
    drawn = {ax: False for ax in (ax_loss, ax_acc, ax_lr)}
    read = {name: read_curves(source) for name, source in runs.items()}
    schedules = [c.get(LEARNING_RATE, []) for c in read.values()]
    # an ablation trains every model on one schedule: one line says so, five would hide each other
    one_schedule = len(schedules) > 1 and schedules[0] and all(s == schedules[0] for s in schedules)
    for name, curves in read.items():
        colour = colours[name]
        loss = next((curves[k] for k in TRAIN_LOSS if k in curves), [])
        for ax, curve, scale, style in ((ax_loss, loss, 1.0, {"linewidth": 1.5}),
                                        (ax_loss, curves.get(VAL_LOSS, []), 1.0, {"linestyle": "--", "marker": "o"}),
                                        (ax_acc, curves.get(VAL_ACCURACY, []), 100.0, {"marker": "o"}),
                                        (ax_lr, [] if one_schedule else curves.get(LEARNING_RATE, []), 1.0, {})):
            _plot(ax, curve, colour, scale, gid=name, **style)
            drawn[ax] = drawn[ax] or bool(curve)
    if one_schedule:
        _plot(ax_lr, schedules[0], "0.3", gid="all", label="every model (one schedule)")
        ax_lr.legend(fontsize=8)
        drawn[ax_lr] = True
    for ax in (ax_loss, ax_lr):  # lr: step schedules divide by 10; loss: an early val loss can be 30x train's
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if values and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 60, not 6x10^1
            ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    for ax, ylabel in ((ax_loss, "loss"), (ax_acc, "val video top-1 (%)"), (ax_lr, "learning rate")):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not drawn[ax]:
            ax.text(0.5, 0.5, "not logged yet", ha="center", va="center", transform=ax.transAxes)
    ax_loss.legend(handles=[Line2D([], [], color="0.3", label="train"),
                            Line2D([], [], color="0.3", linestyle="--", marker="o", label="val")], fontsize=8)
    name = short_title(title)
    fig.suptitle(f"Training curves{': ' + name if name else ''}", fontsize=11)
    if runs:
        fig.legend(handles=legend_handles(colours, {m: method_name(m) for m in runs}), loc="outside lower center",
                   ncol=min(5, len(runs)), fontsize=8, frameon=False)
    return fig


def write_training_curves(runs: Union[Mapping[str, PathLike], PathLike], path: PathLike, title: str = "",
                          colours: Optional[Mapping[str, str]] = None) -> Path:
    """:func:`training_curves_figure` written as PNG to ``path``."""
    return save_png(training_curves_figure(runs, title=title, colours=colours), path)
