"""Table 1 as Markdown and the accuracy-vs-speed figure: ours beside the paper's, clearly labelled.

Both read rows as :func:`~p3d_lightning.ablation.results.read_results` returns them (or the
runner's typed rows). The frame-level ResNet-50 is reported in frames/s as the paper does; the
figure divides by 16 (a 16-frame clip costs 16 frames) to put it on the clips/s axis.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from p3d_lightning.ablation.clip_length import write_clip_length_figure
from p3d_lightning.ablation.curves import seed_runs, write_training_curves
from p3d_lightning.ablation.figures import legend_handles, method_name, model_colours, new_figure, save_png, short_title
from p3d_lightning.ablation.results import atomic_write, format_shape, is_frame_model, parse_shape, to_float
from p3d_lightning.ablation.seeds import markdown_sections, mean_rows, write_seed_csvs
from p3d_lightning.paper import PAPER_SPEED_NOTE, TABLE1

__all__ = ["accuracy_vs_speed_figure", "plot_accuracy_vs_speed", "write_markdown_table", "write_outputs"]


def _speed(row: Mapping[str, Any], prefix: str) -> str:
    """The ``prefix`` speed (``infer`` / ``paper_scale``) in the paper's unit, or ``-``."""
    clips = to_float(row.get(f"{prefix}_clips_per_s"))
    if clips is None:
        return "-"
    if is_frame_model(row):
        return f"{to_float(row.get(f'{prefix}_frames_per_s')):.1f} frame/s"
    return f"{clips:.1f} clip/s"


def _pct(row: Mapping[str, Any], key: str) -> str:
    """A percentage cell; ``mean ± std`` when the row is a mean over seeds."""
    v = to_float(row.get(key))
    if v is None:
        return "-"
    std = to_float(row.get(f"{key}_std"))
    return f"{100 * v:.1f}%" if std is None else f"{100 * v:.1f} ± {100 * std:.1f}%"


def _text(row: Mapping[str, Any], key: str) -> str:
    """A settings cell for the footnote: ``?`` when the key is absent, empty when unmeasured."""
    value = row.get(key, "?")
    return "" if value is None else str(value)


def write_markdown_table(rows: Sequence[Mapping[str, Any]], path: Optional[os.PathLike] = None) -> str:
    """Table 1 in Markdown: our measured numbers beside the paper's (labelled as the paper's).

    ``rows`` are ``results.csv``'s; with several seeds per model the table shows each model's
    mean over seeds (accuracies as mean ± std) and is followed by the across-seeds sections of
    :func:`~p3d_lightning.ablation.seeds.markdown_sections` (95% intervals, paired comparisons).
    """
    per_seed = list(rows)
    rows = mean_rows(per_seed)
    lines = [
        "| Method | Params | Size (MB) | GMACs/clip | Speed, trained net | Speed, paper-scale net | "
        "Clip top-1 | Video top-1 | Paper: size | Paper: speed | Paper: top-1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        paper = TABLE1.get(row["model"])
        params = to_float(row.get("params"))
        size = to_float(row.get("size_mb"))
        gmacs = to_float(row.get("gmacs_per_clip"))
        cells = [
            method_name(row["model"]),
            "-" if params is None else f"{params / 1e6:.2f} M",
            "-" if size is None else f"{size:.1f}",
            "-" if gmacs is None else f"{gmacs:.3g}",
            _speed(row, "infer"),
            _speed(row, "paper_scale"),
            _pct(row, "clip_acc1"),
            _pct(row, "video_acc1"),
            f"{paper.size_mb:.0f}" if paper else "-",
            f"{paper.speed} {paper.speed_unit}" if paper else "-",
            f"{paper.top1}%" if paper else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        first = rows[0]
        scales: List[str] = []
        for row in rows:
            shape = parse_shape(row.get("paper_scale_shape"))
            if shape:
                desc = (f"{format_shape(shape)} ({row.get('paper_scale_precision') or '?'}, "
                        f"batch {row.get('paper_scale_batch_size') or '?'})")
                if desc not in scales:
                    scales.append(desc)
        lines += [
            "",
            f"Ours: speed on {_text(first, 'infer_device')}, {_text(first, 'infer_precision')}, "
            f"batch {_text(first, 'infer_batch_size')}, {_text(first, 'infer_threads')} threads; "
            "paper-scale = the full-size architecture of the row at "
            f"{' / '.join(scales) if scales else '-'}. "
            "Accuracy is on the dataset of this ablation, not UCF101 unless it says so.",
            f"Paper columns: Table 1 of Qiu et al. (ICCV 2017), UCF101 split 1; {PAPER_SPEED_NOTE}.",
        ]
    text = "\n".join(lines) + "\n" + markdown_sections(per_seed, name_of=method_name)
    if path is not None:
        atomic_write(Path(path), text.encode())
    return text


def _our_point(row: Mapping[str, Any]) -> Optional[Tuple[float, float, str, str]]:
    """``(clips/s, video top-1 %, input, "paper_scale" | "infer")`` of one row: the paper-scale
    speed where measured, else the trained net's; ``None`` when speed or accuracy is missing."""
    acc = to_float(row.get("video_acc1"))
    for prefix in ("paper_scale", "infer"):
        if is_frame_model(row):  # a 16-frame clip costs 16 frames for the frame-level baseline
            fps = to_float(row.get(f"{prefix}_frames_per_s"))
            speed = fps / 16 if fps else None
        else:
            speed = to_float(row.get(f"{prefix}_clips_per_s"))
        if speed and acc is not None:
            shape = parse_shape(row.get("paper_scale_shape" if prefix == "paper_scale" else "clip_shape"))
            return speed, 100 * acc, format_shape(shape) if shape else "", prefix
    return None


def _common_setting(measured: Sequence[Tuple[Mapping[str, Any], str]]) -> str:
    """Device, precision and batch of the speeds drawn (each row's own: paper-scale or trained),
    those that every row shares; a setting the rows differ in is left out."""
    parts = []
    for label, key in (("", "device"), ("", "precision"), ("batch ", "batch_size")):
        values = {str(row.get("infer_device" if key == "device" else f"{prefix}_{key}") or "").strip()
                  for row, prefix in measured}
        if len(values) == 1 and "" not in values:
            parts.append(f"{label}{values.pop()}")
    return ", ".join(parts)


def accuracy_vs_speed_figure(rows: Sequence[Mapping[str, Any]], title: str = "", figure: Any = None,
                             colours: Optional[Mapping[str, str]] = None):
    """Accuracy vs clips/s: ours (left) beside the paper's Table 1 (right). Returns the figure.

    One colour per method in both panels (:func:`~p3d_lightning.ablation.figures.model_colours`),
    named as the paper names it in a legend under the panels, with each of our rows' own input
    (``CxTxHxW``). Ours uses the paper-scale speed where it was measured, else the trained
    network's; the frame-level ResNet-50's frames/s are divided by 16. Draws into ``figure``
    when given (a notebook's ``plt.figure()``), else into a new figure without pyplot.
    """
    fig = new_figure((11, 4.8), figure)
    ax_ours, ax_paper = fig.subplots(1, 2)
    rows = mean_rows(rows)  # several seeds: each model's mean, with its 95% interval drawn
    colours = {**model_colours(str(r["model"]) for r in rows), **(colours or {})}
    labels: Dict[str, str] = {}
    measured = [(r, _our_point(r)) for r in rows]
    measured = [(r, p) for r, p in measured if p is not None]
    points = [(str(r["model"]), p) for r, p in measured]
    seeds = max([int(to_float(r.get("n_seeds")) or 1) for r, _ in measured] or [1])
    for (row, _), (model, (speed, acc, shape, _)) in zip(measured, points):
        ax_ours.scatter(speed, acc, s=70, color=colours[model], edgecolors="black", linewidths=0.5, zorder=3,
                        gid=model)
        low, high = to_float(row.get("video_acc1_ci95_low")), to_float(row.get("video_acc1_ci95_high"))
        if low is not None and high is not None:  # the 95% interval of the mean over seeds
            ax_ours.errorbar(speed, acc, yerr=[[acc - 100 * low], [100 * high - acc]], color=colours[model],
                             capsize=4, lw=1.2, zorder=2)
        labels[model] = f"{method_name(model)} (ours: input {shape})" if shape else method_name(model)
    kinds = {p[3] for _, p in points}
    if kinds == {"paper_scale"}:
        kind = "paper-scale net"
    elif "paper_scale" in kinds:
        kind = "paper-scale net where measured, else trained net"
    else:
        kind = "trained net"
    speeds = [p[0] for _, p in points]
    if speeds and max(speeds) / min(speeds) > 10:  # CPU speeds of tiny nets span decades
        ax_ours.set_xscale("log")
    if not points:
        ax_ours.text(0.5, 0.5, "no model measured yet", ha="center", va="center", transform=ax_ours.transAxes)
    ax_ours.set_xlabel(f"clips/s ({kind}; ResNet-50: frames/s / 16)")
    ax_ours.set_ylabel("video top-1 (%)" + (f", mean of {seeds} seeds, 95% interval" if seeds > 1 else ""))
    setting = _common_setting([(r, p[3]) for r, p in measured])
    name = short_title(title)
    ax_ours.set_title(f"Ours{': ' + name if name else ''}" + (f"\n{setting}" if setting else ""), fontsize=10)
    for model, paper in TABLE1.items():
        speed = paper.speed / 16 if paper.speed_unit == "frame/s" else paper.speed
        ax_paper.scatter(speed, paper.top1, s=70, marker="s", color=colours[model], edgecolors="black",
                         linewidths=0.5, zorder=3, gid=model)
        labels.setdefault(model, method_name(model))
    ax_paper.set_xlabel("clips/s (ResNet-50: frames/s / 16)")
    ax_paper.set_ylabel("top-1 (%)")
    ax_paper.set_title("Paper's Table 1 (UCF101 split 1, one 2017 GPU)", fontsize=10)
    for ax in (ax_ours, ax_paper):
        ax.margins(0.12)  # no point on the frame
        ax.grid(alpha=0.3)
    order = [m for m in TABLE1 if m in labels] + [m for m in labels if m not in TABLE1]
    fig.legend(handles=legend_handles(colours, {m: labels[m] for m in order}), loc="outside lower center",
               ncol=min(3, len(order)), fontsize=8, frameon=False)
    return fig


def plot_accuracy_vs_speed(rows: Sequence[Mapping[str, Any]], path: os.PathLike, title: str = "",
                           colours: Optional[Mapping[str, str]] = None) -> Path:
    """:func:`accuracy_vs_speed_figure` written as PNG to ``path``."""
    return save_png(accuracy_vs_speed_figure(rows, title=title, colours=colours), path)


def write_outputs(output: Path, rows: Sequence[Dict[str, Any]], title: str) -> None:
    """``table.md``, ``accuracy_vs_speed.png`` and ``training_curves.png`` (every run under
    ``output/runs`` so far, from its CSV log; of a multi-seed ablation each model's lowest seed)
    in ``output``, in the same colours; each run's own curves in its folder
    (``runs/<model>/[seed<s>/]training_curves.png``). With several seeds per model also
    ``summary.csv`` and ``paired.csv``; with an architecture at several clip lengths also
    ``accuracy_vs_clip_length.png``."""
    write_markdown_table(rows, output / "table.md")
    write_seed_csvs(output, rows)
    runs = seed_runs(output)
    colours = model_colours([*(str(r["model"]) for r in rows), *runs])
    plot_accuracy_vs_speed(rows, output / "accuracy_vs_speed.png", title=title, colours=colours)
    write_clip_length_figure(rows, output / "accuracy_vs_clip_length.png", title=title)
    first = {model: next(iter(seeds.items())) for model, seeds in runs.items()}
    overlay_title = title + (f" (seed {next(iter(first.values()))[0]})"
                             if any(seed is not None for seed, _ in first.values()) else "")
    write_training_curves({m: folder for m, (_, folder) in first.items()}, output / "training_curves.png",
                          title=overlay_title, colours=colours)
    for model, seeds in runs.items():
        for seed, folder in seeds.items():
            name = model if seed is None else f"{model}, seed {seed}"
            write_training_curves({model: folder}, Path(folder) / "training_curves.png", title=f"{title}: {name}",
                                  colours=colours)
