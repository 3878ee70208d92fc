"""Notebook 01 (``01_table1_ablation.ipynb``): Table 1 from the ablation runner's results.

:func:`load_ablation_results` reads the runner's ``results.csv`` (or the runs of its W&B
group), :func:`table1` puts our numbers beside the paper's, :func:`plot_table1_accuracy` and
:func:`plot_accuracy_vs_speed` draw them (the latter is the runner's own figure, drawn live),
:func:`plot_training_curves` the runs' curves from their CSV logs. For an ablation with several
seeds, :func:`seed_summary` and :func:`paired_comparison` give mean +- std, 95% intervals and
the paired comparisons; :func:`plot_clip_length` draws accuracy and clips/s against frames per
clip (the clip-length ablation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from p3d_lightning.ablation import RESULT_FIELDS, is_frame_model, read_results
from p3d_lightning.ablation import to_float as _num
from p3d_lightning.ablation.clip_length import clip_length_figure, clip_length_series
from p3d_lightning.ablation.curves import ablation_runs, seed_runs, training_curves_figure
from p3d_lightning.ablation.figures import method_name
from p3d_lightning.ablation.seeds import is_multi_seed, mean_rows, paired_comparisons, summarize
from p3d_lightning.ablation.table import accuracy_vs_speed_figure
from p3d_lightning.paper import PAPER_SPEED_NOTE, TABLE1
from p3d_lightning.reports.common import PathLike, new_ax

__all__ = ["load_ablation_results", "speed_setting", "table1", "plot_table1_accuracy", "plot_accuracy_vs_speed",
           "plot_training_curves", "seed_summary", "paired_comparison", "plot_clip_length"]


def _pct(value: Any) -> Optional[float]:
    v = _num(value)
    return None if v is None else 100.0 * v


def load_ablation_results(source: PathLike, api: Any = None):
    """The ablation's results as a ``pandas.DataFrame`` (one row per model, or per model and seed
    for an ablation with several seeds; the runner's columns).

    Args:
        source: an ablation output folder (holding ``results.csv``), a ``results.csv`` file, or
            ``wandb:ENTITY/PROJECT/GROUP`` to read the runs of an ablation's W&B group (needs a
            logged-in, online W&B; every run of the group that carries ``ablation/*`` summary
            keys, as the runner writes them, becomes a row).
        api: a ``wandb.Api``-like object (tests pass a fake); default ``wandb.Api()``.

    Raises ``FileNotFoundError`` naming the path when there is no ``results.csv``, and
    ``ValueError`` when the source holds no finished model.
    """
    import pandas as pd

    text = str(source)
    if text.startswith("wandb:"):
        # imported here: loggers pulls in Lightning, which reading a results.csv does not need
        from p3d_lightning.wandb_runs import wandb_group_rows

        rows = wandb_group_rows(text[len("wandb:"):], api)
        where = text
    else:
        path = Path(source)
        csv_path = path / "results.csv" if path.is_dir() else path
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"no ablation results at {csv_path}: run `p3d-ablation --output {path}` first "
                "(or point the notebook's RESULTS parameter / P3D_RESULTS_DIR at its output folder)"
            )
        rows = read_results(csv_path)
        where = str(csv_path)
    if not rows:
        raise ValueError(f"{where}: no finished model in the ablation results yet")
    frame = pd.DataFrame(rows)
    for col in RESULT_FIELDS:
        if col not in frame:
            frame[col] = None
    order = {m: i for i, m in enumerate(TABLE1)}
    first = {}  # a model the paper does not have keeps its place in the results (the config's order)
    for m in frame["model"]:
        first.setdefault(m, len(order) + len(first))
    frame["_order"] = [order.get(m, first[m]) for m in frame["model"]]
    frame["_seed"] = pd.to_numeric(frame["seed"], errors="coerce").fillna(-1)
    frame = frame.sort_values(["_order", "_seed"], kind="stable").drop(columns=["_order", "_seed"])
    return frame.reset_index(drop=True)


def speed_setting(row: Mapping[str, Any], prefix: str = "infer") -> str:
    """The settings a speed was measured under, in words (device, precision, batch, threads, input).

    ``prefix`` is ``"infer"`` (the trained network) or ``"paper_scale"`` (the full-size network at
    the paper's input). Empty when that speed was not measured.
    """
    if _num(row.get(f"{prefix}_clips_per_s")) is None:
        return ""
    if prefix == "infer":
        fields = [("", "infer_device"), ("", "infer_precision"), ("batch ", "infer_batch_size"),
                  ("threads: ", "infer_threads"), ("input ", "clip_shape")]
    else:
        fields = [("", "infer_device"), ("", "paper_scale_precision"), ("batch ", "paper_scale_batch_size"),
                  ("threads: ", "infer_threads"), ("input ", "paper_scale_shape")]
    # fields the run did not record are left out rather than guessed
    return ", ".join(f"{label}{row.get(key)}" for label, key in fields if str(row.get(key) or "").strip())


def _speed(row: Mapping[str, Any], prefix: str) -> Optional[float]:
    """Speed in the paper's unit: frames/s for a frame-level model, else clips/s."""
    key = f"{prefix}_frames_per_s" if is_frame_model(row) else f"{prefix}_clips_per_s"
    return _num(row.get(key))


def table1(results) -> "Any":
    """Table 1: our measured numbers beside the paper's, one row per model.

    Args:
        results: a DataFrame from :func:`load_ablation_results` (or a list of its row dicts).

    With several seeds per model, each model's row holds its means over seeds, and the columns
    ``seeds``, ``video top-1 std`` and ``video top-1 95% CI`` follow ``video top-1 (%)``.

    Columns: ``method``, ``model``, ours (``params (M)``, ``size (MB)``, ``GMACs/clip``,
    ``clip top-1 (%)``, ``video top-1 (%)``, ``speed``, ``speed unit``, ``speed settings``,
    ``paper-scale speed``, ``paper-scale settings``) and the paper's (``paper: size (MB)``,
    ``paper: speed``, ``paper: speed unit``, ``paper: top-1 (%)``; empty for a model the paper
    does not have). Speeds are frames/s for the frame-level ResNet-50 (as the paper reports it)
    and clips/s otherwise.
    """
    import pandas as pd

    per_seed = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
    multi = is_multi_seed(per_seed)
    rows = mean_rows(per_seed)
    out = []
    for row in rows:
        model = str(row["model"])
        paper = TABLE1.get(model)
        params = _num(row.get("params"))
        seeds = {}
        if multi:
            low, high = _pct(row.get("video_acc1_ci95_low")), _pct(row.get("video_acc1_ci95_high"))
            seeds = {"seeds": int(row.get("n_seeds") or 1), "video top-1 std": _pct(row.get("video_acc1_std")),
                     "video top-1 95% CI": "-" if low is None else f"[{low:.1f}, {high:.1f}]"}
        out.append(
            {
                "method": method_name(model),
                "model": model,
                "params (M)": None if params is None else params / 1e6,
                "size (MB)": _num(row.get("size_mb")),
                "GMACs/clip": _num(row.get("gmacs_per_clip")),
                "clip top-1 (%)": _pct(row.get("clip_acc1")),
                "video top-1 (%)": _pct(row.get("video_acc1")),
                **seeds,
                "speed": _speed(row, "infer"),
                "speed unit": "frame/s" if is_frame_model(row) else "clip/s",
                "speed settings": speed_setting(row, "infer"),
                "paper-scale speed": _speed(row, "paper_scale"),
                "paper-scale settings": speed_setting(row, "paper_scale"),
                "paper: size (MB)": paper.size_mb if paper else None,
                "paper: speed": paper.speed if paper else None,
                "paper: speed unit": paper.speed_unit if paper else None,
                "paper: top-1 (%)": paper.top1 if paper else None,
            }
        )
    frame = pd.DataFrame(out)
    for col in frame.columns:  # missing numbers as NaN, not None
        if col not in ("method", "model", "speed unit", "speed settings", "paper-scale settings", "paper: speed unit",
                       "video top-1 95% CI"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame.attrs["rows"] = per_seed  # the runner's rows, which plot_accuracy_vs_speed draws
    frame.attrs["paper_note"] = (
        f"paper: Table 1 of Qiu et al. (ICCV 2017), UCF101 split 1; {PAPER_SPEED_NOTE}"
    )
    return frame


def plot_table1_accuracy(table, ax: Any = None, title: str = ""):
    """Grouped bar chart: our video top-1 beside the paper's Table 1 top-1, per model.

    ``table`` is the output of :func:`table1`. Returns the matplotlib figure.
    """
    fig, ax = new_ax(ax, (8, 3.8))
    x = np.arange(len(table))
    ours = table["video top-1 (%)"].astype(float).to_numpy()
    paper = table["paper: top-1 (%)"].astype(float).to_numpy()
    std = table["video top-1 std"].astype(float).to_numpy() if "video top-1 std" in table else None
    label = "ours: video top-1" + (" (mean ± std over seeds)" if std is not None else "")
    bars = ax.bar(x - 0.2, ours, width=0.4, label=label, yerr=std, capsize=3 if std is not None else 0)
    ax.bar(x + 0.2, paper, width=0.4, label="paper: top-1 (UCF101 split 1)", alpha=0.6, hatch="//")
    if std is None:
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    else:  # inside the bar: above it the error bar would cross the number
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center", color="white")
    ax.set_xticks(x, list(table["method"]), rotation=15)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 118)
    ax.set_title(title or "Table 1: accuracy")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _table_rows(table) -> list:
    """The runner's rows behind ``table`` (kept by :func:`table1`), or ``table``'s own when it is
    :func:`load_ablation_results`' frame or a list of its rows."""
    rows = getattr(table, "attrs", {}).get("rows")
    if rows is None:
        rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
        if rows and "video_acc1" not in rows[0]:
            raise ValueError("expected the table of table1() or the results of load_ablation_results()")
    return list(rows)


def plot_accuracy_vs_speed(table, title: str = ""):
    """Accuracy vs clips/s, ours (left) beside the paper's Table 1 (right), as a live figure.

    ``table`` is the output of :func:`table1` (or :func:`load_ablation_results`). The runner's
    figure (:func:`p3d_lightning.ablation.table.accuracy_vs_speed_figure`) drawn into a pyplot
    figure, so a notebook shows it inline. Returns the figure.
    """
    import matplotlib.pyplot as plt

    return accuracy_vs_speed_figure(_table_rows(table), title=title, figure=plt.figure())


def plot_training_curves(source: PathLike, title: str = ""):
    """Loss, val video top-1 and learning rate against step of every run of an ablation,
    overlaid in the scatter's colours, from the runs' CSV logs, as a live figure.

    ``source`` is the ablation's output folder (or its ``results.csv``); of a multi-seed
    ablation, each model's lowest seed (named in the title). Raises
    ``FileNotFoundError`` naming the folder when no run has a log there. Returns the figure.
    """
    import matplotlib.pyplot as plt

    folder = Path(source)
    folder = folder.parent if folder.is_file() else folder
    runs = ablation_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no training logs under {folder / 'runs'}: run `p3d-ablation --output {folder}` first")
    seeds = {next(iter(s)) for s in seed_runs(folder).values()}  # a multi-seed ablation: its lowest seeds
    if seeds != {None}:
        title = f"{title} (seed {', '.join(str(s) for s in sorted(x for x in seeds if x is not None))})"
    return training_curves_figure(runs, title=title, figure=plt.figure())


def _rows_of(results) -> list:
    return results.to_dict("records") if hasattr(results, "to_dict") else list(results)


def seed_summary(results):
    """Per model across seeds, as a ``pandas.DataFrame`` in percent: ``method``, ``model``,
    ``seeds``, video and clip top-1 mean, std and 95% interval (Student-t). One row per model
    with one seed each has empty std and interval columns."""
    import pandas as pd

    out = []
    for s in summarize(_rows_of(results)):
        row = {"method": method_name(s["model"]), "model": s["model"], "seeds": s["seeds"], "n_seeds": s["n_seeds"]}
        for metric, name in (("video_acc1", "video top-1"), ("clip_acc1", "clip top-1")):
            row.update({f"{name} mean (%)": _pct(s[f"{metric}_mean"]), f"{name} std": _pct(s[f"{metric}_std"]),
                        f"{name} 95% low": _pct(s[f"{metric}_ci95_low"]),
                        f"{name} 95% high": _pct(s[f"{metric}_ci95_high"])})
        out.append(row)
    return pd.DataFrame(out)


def paired_comparison(results, metric: str = "video_acc1"):
    """Paired differences ``A - B`` of ``metric`` across the seeds both have, as a
    ``pandas.DataFrame`` in percentage points: ``A``, ``B``, ``seeds``, ``mean diff (pp)``, the
    95% interval, the paired t-test's ``p`` and ``supported`` (the interval excludes 0). Every
    P3D variant against ResNet-50 first, then the variants against each other."""
    import pandas as pd

    return pd.DataFrame([{"A": method_name(p["model_a"]), "B": method_name(p["model_b"]), "seeds": p["seeds"],
                          "mean diff (pp)": 100 * p["mean_diff"], "std (pp)": 100 * p["std_diff"],
                          "95% low (pp)": 100 * p["ci95_low"], "95% high (pp)": 100 * p["ci95_high"],
                          "p": p["p_value"], "supported": p["supported"]}
                         for p in paired_comparisons(_rows_of(results), metric)],
                        columns=["A", "B", "seeds", "mean diff (pp)", "std (pp)", "95% low (pp)", "95% high (pp)",
                                 "p", "supported"])


def plot_clip_length(results, title: str = ""):
    """Video top-1 and clips/s against frames per clip (the clip-length ablation), as a live
    figure: the runner's ``accuracy_vs_clip_length.png`` drawn into a pyplot figure. Raises
    ``ValueError`` when no architecture of ``results`` appears at two or more clip lengths."""
    import matplotlib.pyplot as plt

    rows = _rows_of(results)
    if not clip_length_series(rows):
        raise ValueError("no architecture at two or more clip lengths in these results: run "
                         "`p3d-ablation --config experiments/ablation_clip_length.yaml` and read its output folder")
    return clip_length_figure(rows, title=title, figure=plt.figure())
