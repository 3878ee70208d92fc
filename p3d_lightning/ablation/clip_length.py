"""The clip-length axis: accuracy and clips/s against frames per clip, for an architecture
trained at several clip lengths (``experiments/ablation_clip_length.yaml``: P3D ResNet at 8, 16
and 32 frames).

The paper trains on 16-frame clips and names longer clips as an open question. Rows of one
architecture whose clip shapes differ only in frames (``T`` of ``CxTxHxW``) form a series; the
figure draws each series' video top-1 (mean with its 95% interval over seeds when the ablation
has several) and its clips/s, of the trained network and, where measured, of the full-size
network at the same number of frames. The runner writes it as ``accuracy_vs_clip_length.png``
whenever some architecture appears at two or more clip lengths.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from p3d_lightning.ablation.figures import legend_handles, method_name, model_colours, new_figure, save_png, short_title
from p3d_lightning.ablation.results import is_frame_model, parse_shape, to_float
from p3d_lightning.ablation.seeds import mean_rows

__all__ = ["clip_length_figure", "clip_length_series", "write_clip_length_figure"]

_MIN_SPAN = 10.0  # percentage points: the accuracy axis spans at least this much


def clip_length_series(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """``{arch: [row, ...]}`` sorted by frames per clip, for every clip (not frame-level)
    architecture present at two or more clip lengths; each row (a mean over seeds when there are
    several) gains ``frames``."""
    series: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for row in mean_rows(rows):
        shape = parse_shape(row.get("clip_shape"))
        if shape is None or len(shape) != 4 or is_frame_model(row):
            continue
        frames = int(shape[1])
        series.setdefault(str(row.get("arch") or row["model"]), {}).setdefault(frames, {**row, "frames": frames})
    return {arch: [by_t[t] for t in sorted(by_t)] for arch, by_t in series.items() if len(by_t) >= 2}


def _errors(points: Sequence[Mapping[str, Any]]) -> Optional[List[List[float]]]:
    """Asymmetric error bars (percent) from each point's 95% interval; ``None`` without seeds."""
    low = [to_float(p.get("video_acc1_ci95_low")) for p in points]
    high = [to_float(p.get("video_acc1_ci95_high")) for p in points]
    if any(v is None for v in low + high):
        return None
    means = [100 * to_float(p["video_acc1"]) for p in points]
    return [[m - 100 * lo for m, lo in zip(means, low)], [100 * hi - m for m, hi in zip(means, high)]]


def clip_length_figure(rows: Sequence[Mapping[str, Any]], title: str = "", figure: Any = None):
    """Video top-1 (left) and clips/s (right, log scale) against frames per clip, one colour per
    architecture; the trained network's speed solid, the full-size network's dashed. Returns the
    figure (drawn into ``figure`` when given, e.g. a notebook's ``plt.figure()``)."""
    fig = new_figure((10, 4.2), figure)
    ax_acc, ax_speed = fig.subplots(1, 2)
    series = clip_length_series(rows)
    colours = model_colours(series)
    labels = {}
    ticks = set()
    for arch, points in series.items():
        frames = [p["frames"] for p in points]
        ticks.update(frames)
        acc = [100 * (to_float(p.get("video_acc1")) or float("nan")) for p in points]
        n_seeds = max(int(to_float(p.get("n_seeds")) or 1) for p in points)
        ax_acc.errorbar(frames, acc, yerr=_errors(points), color=colours[arch], marker="o", capsize=4, lw=1.5)
        for t, value in zip(frames, acc):
            ax_acc.annotate(f"{value:.1f}", (t, value), textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize=8, color=colours[arch])
        trained = [to_float(p.get("infer_clips_per_s")) for p in points]
        if all(v is not None for v in trained):
            ax_speed.plot(frames, trained, color=colours[arch], marker="o", lw=1.5)
        full = [(p["frames"], to_float(p.get("paper_scale_clips_per_s"))) for p in points]
        full = [(t, v) for t, v in full if v is not None]
        if full:
            ax_speed.plot(*zip(*full), color=colours[arch], marker="s", ls="--", lw=1.5)
        labels[arch] = method_name(arch) + (f" (mean of {n_seeds} seeds, 95% interval)" if n_seeds > 1 else " (one seed)")
    if not series:
        for ax in (ax_acc, ax_speed):
            ax.text(0.5, 0.5, "no architecture at two or more clip lengths", ha="center", va="center",
                    transform=ax.transAxes)
    for ax in (ax_acc, ax_speed):
        ax.set_xlabel("frames per clip")
        if ticks and max(ticks) / min(ticks) >= 4:  # 8 / 16 / 32: evenly spaced doublings
            ax.set_xscale("log", base=2)
        if ticks:
            ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
            ax.minorticks_off()
        ax.margins(0.1)
        ax.grid(alpha=0.3)
    ax_acc.set_ylabel("video top-1 (%)")
    low, high = ax_acc.get_ylim()
    if series and high - low < _MIN_SPAN:  # a one-video step must not look like a trend
        low = min(max(0.0, (low + high) / 2 - _MIN_SPAN / 2), 100.0 + 1.0 - _MIN_SPAN)
        ax_acc.set_ylim(low, low + _MIN_SPAN)
    ax_speed.set_ylabel("clips/s")
    if ax_speed.lines:
        ax_speed.set_yscale("log")
    name = short_title(title)
    ax_acc.set_title("Accuracy" + (f": {name}" if name else ""), fontsize=10)
    ax_speed.set_title("Inference speed (solid: trained net; dashed: full-size net)", fontsize=10)
    if labels:
        fig.legend(handles=legend_handles(colours, labels), loc="outside lower center", ncol=min(3, len(labels)),
                   fontsize=8, frameon=False)
    return fig


def write_clip_length_figure(rows: Sequence[Mapping[str, Any]], path: os.PathLike, title: str = "") -> Optional[Path]:
    """:func:`clip_length_figure` as PNG at ``path`` when some architecture has two or more clip
    lengths; ``None`` (nothing written) otherwise."""
    if not clip_length_series(rows):
        return None
    return save_png(clip_length_figure(rows, title=title), path)
