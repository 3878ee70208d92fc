"""Helpers behind the notebooks in ``notebooks/``: the paper's tables and figures from our runs.

Each notebook is a thin page over these functions, so what it shows is tested here:

* Table 1 (``01_table1_ablation.ipynb``): :func:`load_ablation_results` reads the ablation
  runner's ``results.csv`` (or the runs of a W&B group), :func:`table1` puts our numbers beside
  the paper's, :func:`plot_table1_accuracy` and :func:`plot_accuracy_vs_speed` draw them.
* Model zoo (``02_model_zoo.ipynb``): :func:`zoo_table` measures parameters, fp32 size, depth
  and GMACs of every architecture on the ``meta`` device (no memory, no compute), beside the
  paper's sizes and depths; :func:`plot_depth_vs_size` is the paper's Figure 1 style plot.
* Table 2 protocol (``03_table2_protocol.ipynb``): :func:`save_clip_predictions` runs a test
  loader once and saves the per-clip softmax scores; :func:`protocol_metrics` turns them into
  clip hit@1, video hit@1 and video hit@5; :func:`table2` adds the paper's rows.
* Representation (``04_representation.ipynb``): :func:`load_features` reads what ``p3d
  predict`` wrote (one pool5 feature per video), :func:`linear_probe` trains a linear SVM on
  them and :func:`tsne_embedding` / :func:`plot_embedding` draw the 2-D embedding.

Our numbers always come from files the runs wrote; the paper's come from
:mod:`p3d_lightning.paper` and are labelled ``paper: ...``. Accuracies are in percent here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from p3d_lightning.ablation import to_float as _num
from p3d_lightning.paper import (
    C3D_SIZE_MB,
    PAPER_DEPTHS,
    PAPER_PARAM_COUNTS,
    PAPER_SIZES_MB,
    PAPER_SPEED_NOTE,
    TABLE1,
    TABLE2,
)

__all__ = [
    "ZOO_MODELS",
    "load_ablation_results",
    "speed_setting",
    "table1",
    "plot_table1_accuracy",
    "plot_accuracy_vs_speed",
    "count_layers",
    "zoo_table",
    "paper_accuracy",
    "plot_depth_vs_size",
    "save_clip_predictions",
    "clip_predictions_from_checkpoint",
    "load_clip_predictions",
    "protocol_metrics",
    "table2",
    "FeatureSet",
    "load_features",
    "split_features",
    "linear_probe",
    "tsne_embedding",
    "plot_embedding",
    "env_path",
    "env_mapping",
]

PathLike = Union[str, os.PathLike]

#: Architectures of the zoo notebook: Table 1's five, then the deeper P3D ResNets.
ZOO_MODELS = ("resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d", "p3d131", "p3d199")

#: P3D-A/B/C have exactly the mixed network's layers and shapes (only the wiring differs),
#: so the paper's facts stated for "P3D ResNet" (size, depth, parameters) apply to them too.
_SAME_AS_MIXED = {"p3d_a": "p3d", "p3d_b": "p3d", "p3d_c": "p3d"}


# --------------------------------------------------------------------------------------
# notebook parameters
# --------------------------------------------------------------------------------------


def env_path(name: str, default: PathLike) -> Path:
    """A path parameter: environment variable ``name`` if set and non-empty, else ``default``."""
    value = os.environ.get(name, "").strip()
    return Path(value) if value else Path(default)


def env_mapping(name: str, default: Mapping[str, str]) -> Dict[str, str]:
    """A ``label=value,label=value`` parameter from environment variable ``name`` (else ``default``).

    Raises ``ValueError`` naming the variable when an item has no ``=``.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return dict(default)
    out = {}
    for item in value.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"{name}: expected comma-separated label=value items, got {item!r}")
        key, val = item.split("=", 1)
        out[key.strip()] = val.strip()
    return out


def _pct(value: Any) -> Optional[float]:
    v = _num(value)
    return None if v is None else 100.0 * v


# --------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------


def load_ablation_results(source: PathLike, api: Any = None):
    """The ablation's results as a ``pandas.DataFrame`` (one row per model, runner's columns).

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

    from p3d_lightning.ablation import RESULT_FIELDS, read_results

    text = str(source)
    if text.startswith("wandb:"):
        rows = _wandb_group_rows(text[len("wandb:"):], api)
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
    frame["_order"] = [order.get(m, len(order)) for m in frame["model"]]
    frame = frame.sort_values(["_order", "model"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _wandb_group_rows(spec: str, api: Any) -> List[Dict[str, Any]]:
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


def _is_frame_model(row: Mapping[str, Any]) -> bool:
    """True for a frame-level network (clip_shape C x 1 x H x W): its speed is in frames/s."""
    return str(row.get("clip_shape", "")).split("x")[1:2] == ["1"]


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
    key = f"{prefix}_frames_per_s" if _is_frame_model(row) else f"{prefix}_clips_per_s"
    return _num(row.get(key))


def table1(results) -> "Any":
    """Table 1: our measured numbers beside the paper's, one row per model.

    Args:
        results: a DataFrame from :func:`load_ablation_results` (or a list of its row dicts).

    Columns: ``method``, ``model``, ours (``params (M)``, ``size (MB)``, ``GMACs/clip``,
    ``clip top-1 (%)``, ``video top-1 (%)``, ``speed``, ``speed unit``, ``speed settings``,
    ``paper-scale speed``, ``paper-scale settings``) and the paper's (``paper: size (MB)``,
    ``paper: speed``, ``paper: speed unit``, ``paper: top-1 (%)``; empty for a model the paper
    does not have). Speeds are frames/s for the frame-level ResNet-50 (as the paper reports it)
    and clips/s otherwise.
    """
    import pandas as pd

    rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
    out = []
    for row in rows:
        model = str(row["model"])
        paper = TABLE1.get(model)
        params = _num(row.get("params"))
        out.append(
            {
                "method": paper.method if paper else model,
                "model": model,
                "params (M)": None if params is None else params / 1e6,
                "size (MB)": _num(row.get("size_mb")),
                "GMACs/clip": _num(row.get("gmacs_per_clip")),
                "clip top-1 (%)": _pct(row.get("clip_acc1")),
                "video top-1 (%)": _pct(row.get("video_acc1")),
                "speed": _speed(row, "infer"),
                "speed unit": "frame/s" if _is_frame_model(row) else "clip/s",
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
        if col not in ("method", "model", "speed unit", "speed settings", "paper-scale settings", "paper: speed unit"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame.attrs["paper_note"] = (
        f"paper: Table 1 of Qiu et al. (ICCV 2017), UCF101 split 1; {PAPER_SPEED_NOTE}"
    )
    return frame


def _new_ax(ax: Any, figsize: Tuple[float, float]):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def plot_table1_accuracy(table, ax: Any = None, title: str = ""):
    """Grouped bar chart: our video top-1 beside the paper's Table 1 top-1, per model.

    ``table`` is the output of :func:`table1`. Returns the matplotlib figure.
    """
    fig, ax = _new_ax(ax, (8, 3.8))
    x = np.arange(len(table))
    ours = table["video top-1 (%)"].astype(float).to_numpy()
    paper = table["paper: top-1 (%)"].astype(float).to_numpy()
    bars = ax.bar(x - 0.2, ours, width=0.4, label="ours: video top-1")
    ax.bar(x + 0.2, paper, width=0.4, label="paper: top-1 (UCF101 split 1)", alpha=0.6, hatch="//")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, list(table["method"]), rotation=15)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 118)
    ax.set_title(title or "Table 1: accuracy")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_speed(table, title: str = ""):
    """Accuracy vs clips/s: ours (left) and the paper's Table 1 (right). Returns the figure.

    The frame-level ResNet-50's frames/s are divided by 16 (a 16-frame clip costs 16 frames),
    as for the paper's points. Ours uses the paper-scale speed when it was measured, else the
    trained network's.
    """
    import matplotlib.pyplot as plt

    fig, (ax_ours, ax_paper) = plt.subplots(1, 2, figsize=(11, 4))
    paper_scale = table["paper-scale speed"].notna().any()
    key = "paper-scale speed" if paper_scale else "speed"
    for _, row in table.iterrows():
        speed, acc = _num(row[key]), _num(row["video top-1 (%)"])
        if speed is None or acc is None:
            continue
        if row["speed unit"] == "frame/s":
            speed /= 16
        ax_ours.scatter(speed, acc, s=60)
        ax_ours.annotate(row["method"], (speed, acc), textcoords="offset points", xytext=(5, 4), fontsize=8)
    settings = table["paper-scale settings" if paper_scale else "speed settings"].iloc[0] if len(table) else ""
    ax_ours.set_xlabel(f"clips/s ({'paper-scale' if paper_scale else 'trained'} net; ResNet-50: frames/s / 16)")
    ax_ours.set_ylabel("video top-1 (%)")
    ax_ours.set_title(f"ours{': ' + title if title else ''}\n{settings}", fontsize=9)
    ax_ours.grid(alpha=0.3)
    for model, paper in TABLE1.items():
        speed = paper.speed / 16 if paper.speed_unit == "frame/s" else paper.speed
        ax_paper.scatter(speed, paper.top1, s=60, marker="s")
        ax_paper.annotate(paper.method, (speed, paper.top1), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax_paper.set_xlabel("clips/s (ResNet-50: frames/s / 16)")
    ax_paper.set_ylabel("top-1 (%)")
    ax_paper.set_title("paper: Table 1 (UCF101 split 1, 2017 GPU)", fontsize=9)
    ax_paper.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# model zoo
# --------------------------------------------------------------------------------------


def count_layers(model: torch.nn.Module) -> int:
    """Depth as the paper counts it: weighted layers (convolutions and fully connected) on the
    main path; projection shortcuts (``downsample``) are not counted.

    ResNet-50 gives 50; the P3D ResNet-50 adds its 13 temporal convolutions (P3D-63).
    """
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            if "downsample" not in name.split("."):
                count += 1
    return count


def _paper_key(name: str) -> str:
    return _SAME_AS_MIXED.get(name, name)


def zoo_table(models: Sequence[str] = ZOO_MODELS, num_classes: int = 101, include_c3d: bool = True):
    """Parameters, fp32 size, depth and GMACs of each architecture, beside the paper's facts.

    Every network is built on the ``meta`` device (shapes only: no memory, no arithmetic), so
    the full zoo, P3D-199 included, takes seconds. GMACs are per clip at each model's default
    input (16x160x160 for P3D, one 224x224 frame for ResNet-50; see ``get_model_cfg``).

    Columns: ``model``, ``input`` (C x T x H x W), ``params``, ``size (MB)``, ``depth``,
    ``GMACs/clip``, ``paper: params``, ``params match paper``, ``paper: size (MB)``,
    ``paper: depth``. With ``include_c3d`` a last row holds C3D's published size (the paper's
    reference point); its measured columns are empty.
    """
    import pandas as pd

    from p3d_lightning.models import create_model, get_model_cfg
    from p3d_lightning.models.complexity import model_complexity

    rows = []
    for name in models:
        cfg = get_model_cfg(name)
        shape = (3, int(cfg.clip_len), int(cfg.crop_size), int(cfg.crop_size))
        with torch.device("meta"):
            net = create_model(name, num_classes=num_classes)
        stats = model_complexity(net, input_shape=shape)
        key = _paper_key(name)
        paper_params = PAPER_PARAM_COUNTS.get((key, num_classes))
        paper_size = PAPER_SIZES_MB.get(key)
        rows.append(
            {
                "model": name,
                "input": "x".join(str(s) for s in shape),
                "params": int(stats["params"]),
                "size (MB)": float(stats["size_mb"]),
                "depth": count_layers(net),
                "GMACs/clip": float(stats["gmacs"]),
                "paper: params": paper_params,
                "params match paper": None if paper_params is None else int(stats["params"]) == paper_params,
                "paper: size (MB)": paper_size,
                "paper: depth": PAPER_DEPTHS.get(key),
            }
        )
    if include_c3d:
        rows.append(
            {
                "model": "c3d (published)",
                "input": "",
                "params": None,
                "size (MB)": None,
                "depth": None,
                "GMACs/clip": None,
                "paper: params": None,
                "params match paper": None,
                "paper: size (MB)": C3D_SIZE_MB,
                "paper: depth": None,
            }
        )
    frame = pd.DataFrame(rows)
    for col in ("params", "depth", "paper: params", "paper: depth"):
        frame[col] = frame[col].astype("Int64")
    frame.attrs["num_classes"] = num_classes
    return frame


def paper_accuracy() -> Dict[str, Tuple[float, str]]:
    """The paper's accuracy for the zoo's models, with where it comes from.

    Table 1 top-1 (UCF101 split 1) for the five ResNet-50-based models; Table 2 video hit@1
    (Sports-1M) for P3D-199. Other models: unknown (absent).
    """
    out = {m: (row.top1, "paper Table 1, UCF101 top-1") for m, row in TABLE1.items()}
    out["p3d199"] = (TABLE2["P3D ResNet-199"]["video_hit1"], "paper Table 2, Sports-1M video hit@1")
    return out


def plot_depth_vs_size(zoo, accuracy: Optional[Mapping[str, Tuple[float, str]]] = None, ax: Any = None):
    """The paper's Figure 1 style plot: depth (layers) vs model size (MB), bubble area ~ accuracy.

    Args:
        zoo: the output of :func:`zoo_table` (our measured depth and fp32 size).
        accuracy: ``{model: (accuracy %, source label)}``; default :func:`paper_accuracy`.
            Models without a known accuracy are drawn as small hollow markers.
        ax: a matplotlib axes to draw on (default: a new figure).

    C3D's published size is drawn as a horizontal reference line. Returns the figure.
    """
    accuracy = paper_accuracy() if accuracy is None else dict(accuracy)
    fig, ax = _new_ax(ax, (8, 4.5))
    measured = zoo[zoo["depth"].notna()]
    sources = set()
    # Models with the same depth and size (P3D-A/B/C and mixed) share one point and one label.
    groups = sorted(measured.groupby(["depth", "size (MB)"], sort=False), key=lambda g: g[0][0])
    for position, ((depth, size), group) in enumerate(groups):
        depth, size = float(depth), float(size)
        lines = []
        for model in group["model"]:
            known = accuracy.get(model)
            if known is not None:
                acc, source = known
                sources.add(source)
                ax.scatter(depth, size, s=8 * acc, alpha=0.35)
                lines.append(f"{model}: {acc:.1f}%")
            else:
                ax.scatter(depth, size, s=30, facecolors="none", edgecolors="gray")
                lines.append(f"{model}: ?")
        # the shallowest point is labelled on its left so it does not run into its neighbour's label
        left = position == 0 and len(groups) > 1
        ax.annotate("\n".join(lines), (depth, size), textcoords="offset points", xytext=(-14 if left else 14, -6),
                    fontsize=7, va="top", ha="right" if left else "left")
    c3d = zoo.loc[zoo["model"] == "c3d (published)", "paper: size (MB)"]
    c3d_mb = float(c3d.iloc[0]) if len(c3d) else C3D_SIZE_MB
    ax.axhline(c3d_mb, color="gray", ls="--", lw=1)
    ax.set_ylim(0, max(c3d_mb, float(measured["size (MB)"].max())) * 1.15)
    ax.set_xlim(0, float(measured["depth"].max()) * 1.25 if len(measured) else 1)
    ax.text(0, c3d_mb, f" C3D: {c3d_mb:.0f} MB (published)", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("model size (MB, fp32 parameters, ours)")
    note = "; ".join(sorted(sources)) if sources else "accuracy unknown"
    ax.set_title(f"Depth vs size (bubble area ~ accuracy: {note})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Table 2 protocol: clip hit@1, video hit@1, video hit@5
# --------------------------------------------------------------------------------------


def _batch_to(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.inference_mode()
def save_clip_predictions(
    model: torch.nn.Module,
    datamodule: Any,
    path: PathLike,
    stage: str = "test",
    device: Union[str, torch.device] = "cpu",
    max_batches: Optional[int] = None,
) -> Path:
    """Run one evaluation loader of ``datamodule`` once and save every clip's softmax scores.

    Args:
        model: a network mapping a clip batch (N, C, T, H, W) to logits (N, K): a ``P3DResNet``
            or a LightningModule whose ``forward`` does (``P3DClassifier``).
        datamodule: a ``VideoDataModule`` (or anything with ``setup`` and ``<stage>_dataloader``
            yielding dict batches with ``clip``, ``label``, ``video_idx``, ``clip_idx``).
        path: the ``.pt`` file to write.
        stage: ``"test"``, ``"val"`` or ``"predict"``.
        device: where to run the model.
        max_batches: stop after this many batches (for quick looks; default: all).

    The file holds ``scores`` (M, K) float32 softmax, ``labels``, ``video_idx``, ``clip_idx``
    (M,) int64, ``valid`` (M,) bool (False for a clip that failed to decode; its scores are
    those of the all-zero placeholder clip and :func:`protocol_metrics` ignores them),
    ``classes`` (class names, if the datamodule has them) and ``num_classes``. Returns ``path``.
    """
    loaders = {"test": "test_dataloader", "val": "val_dataloader", "predict": "predict_dataloader"}
    if stage not in loaders:
        raise ValueError(f"stage must be one of {sorted(loaders)}, got {stage!r}")
    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    datamodule.setup("validate" if stage == "val" else stage)
    loader = getattr(datamodule, loaders[stage])()
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    scores, labels, videos, clips, valids = [], [], [], [], []
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if not isinstance(batch, Mapping) or not {"clip", "label", "video_idx", "clip_idx"} <= set(batch):
                raise ValueError(
                    f"{type(datamodule).__name__}.{loaders[stage]}() must yield dict batches with "
                    "'clip', 'label', 'video_idx', 'clip_idx'"
                )
            batch = _batch_to(batch, device)
            logits = model(batch["clip"])  # (N, K)
            scores.append(torch.softmax(logits.float(), dim=1).cpu())
            labels.append(batch["label"].long().cpu())
            videos.append(batch["video_idx"].long().cpu())
            clips.append(batch["clip_idx"].long().cpu())
            n = batch["label"].shape[0]
            valids.append(batch["valid"].bool().cpu() if "valid" in batch else torch.ones(n, dtype=torch.bool))
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError(f"the {stage} loader of {type(datamodule).__name__} yielded no batch")
    score = torch.cat(scores)
    out = {
        "scores": score,
        "labels": torch.cat(labels),
        "video_idx": torch.cat(videos),
        "clip_idx": torch.cat(clips),
        "valid": torch.cat(valids),
        "num_classes": int(score.shape[1]),
        "classes": list(getattr(datamodule, "classes", None) or []),
        "stage": stage,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return path


def clip_predictions_from_checkpoint(
    checkpoint: PathLike,
    config: PathLike,
    path: PathLike,
    stage: str = "test",
    overrides: Optional[Mapping[str, Any]] = None,
    device: Union[str, torch.device] = "cpu",
) -> Path:
    """:func:`save_clip_predictions` for a trained run: the ``P3DClassifier`` in ``checkpoint``
    on the data of the experiment YAML ``config`` (``overrides``: dotted keys, as
    ``{"data.root": "/data/UCF101"}``). Returns ``path``.

    The command-line form is ``python -m p3d_lightning.reports clip-predictions``.
    """
    from p3d_lightning.experiment import instantiate_from_config
    from p3d_lightning.models.weights import load_module_checkpoint
    from p3d_lightning.module import P3DClassifier

    config, checkpoint = Path(config), Path(checkpoint)
    if not config.is_file():
        raise FileNotFoundError(f"experiment config not found: {config}")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    _, datamodule, _ = instantiate_from_config(str(config), overrides=overrides)
    # weights_only: a checkpoint from elsewhere can hold tensors and plain values, never code
    model = load_module_checkpoint(P3DClassifier, checkpoint, map_location="cpu")
    return save_clip_predictions(model, datamodule, path, stage=stage, device=device)


def load_clip_predictions(path: PathLike) -> Dict[str, Any]:
    """Read a file written by :func:`save_clip_predictions` (checks its keys and shapes).

    Safe on untrusted files (``torch.load(weights_only=True)``: tensors and plain values only);
    a corrupt file or one that would unpickle other objects raises ``ValueError`` naming it.
    """
    from p3d_lightning.models.weights import read_torch_file

    path = Path(path)
    hint = "write them with reports.save_clip_predictions or `python -m p3d_lightning.reports clip-predictions`"
    data = read_torch_file(path, "clip predictions", hint)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a dict of clip predictions; {hint}")
    need = ("scores", "labels", "video_idx", "clip_idx")
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(need)} (see save_clip_predictions)")
    not_tensors = [k for k in need if not isinstance(data[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: {not_tensors} are not tensors; expected a file written by save_clip_predictions")
    m = data["scores"].shape[0]
    for key in need[1:]:
        if data[key].shape != (m,):
            raise ValueError(f"{path}: '{key}' has shape {tuple(data[key].shape)}, expected ({m},) like 'scores'")
    return data


def protocol_metrics(predictions: Mapping[str, Any]) -> Dict[str, float]:
    """Table 2's protocol from per-clip scores: clip hit@1, video hit@1, video hit@5 (percent).

    Clip hit@1 counts every clip once; video hit@k averages the softmax scores of all clips of
    a video, then ranks. Repeated ``(video_idx, clip_idx)`` pairs (padding of a distributed
    sampler) count once. Hit@5 on fewer than 5 classes is hit@K (``top_k_video`` says which).
    Clips marked invalid (``valid`` False: they failed to decode) are left out, and a video
    with no valid clip counts as a miss, as in ``MultiClipAccuracy``. Also returns
    ``num_clips`` (valid clips), ``num_videos``, ``num_classes``, ``num_failed_clips`` and
    ``num_failed_videos``. Files written before ``valid`` existed count every clip as valid.
    """
    from p3d_lightning.metrics import dedup_clips, topk_correct, video_scores

    scores = torch.as_tensor(predictions["scores"]).float()
    labels = torch.as_tensor(predictions["labels"]).long()
    video_idx = torch.as_tensor(predictions["video_idx"]).long()
    clip_idx = torch.as_tensor(predictions["clip_idx"]).long()
    valid = predictions.get("valid")
    valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else torch.as_tensor(valid).bool()
    keep = dedup_clips(video_idx, clip_idx)
    scores, labels, video_idx, valid = scores[keep], labels[keep], video_idx[keep], valid[keep]
    _, vscores, vlabels = video_scores(scores, labels, video_idx, valid)
    scored = ~torch.isnan(vscores).any(dim=1)  # videos with at least one valid clip
    vscores = torch.nan_to_num(vscores, nan=0.0)
    num_classes = int(scores.shape[1])

    def video_hit(k: int) -> float:
        return 100.0 * (topk_correct(vscores, vlabels, k) & scored).float().mean().item()

    return {
        "clip_hit1": 100.0 * topk_correct(scores[valid], labels[valid], 1).float().mean().item(),
        "video_hit1": video_hit(1),
        "video_hit5": video_hit(5),
        "top_k_video": min(5, num_classes),
        "num_clips": int(valid.sum()),
        "num_videos": int(vlabels.shape[0]),
        "num_classes": num_classes,
        "num_failed_clips": int((~valid).sum()),
        "num_failed_videos": int((~scored).sum()),
    }


def table2(ours: Mapping[str, Mapping[str, Any]], dataset: str = "ours"):
    """Table 2: the paper's Sports-1M rows, then ours, with a ``source`` column saying which.

    Args:
        ours: ``{name: protocol_metrics(...)}`` for each of our runs.
        dataset: the dataset our runs were tested on (shown in ``source``).
    """
    import pandas as pd

    rows = [
        {"method": name, "source": "paper (Sports-1M, 487 classes)", **{k: v[k] for k in ("clip_hit1", "video_hit1", "video_hit5")}}
        for name, v in TABLE2.items()
    ]
    for name, m in ours.items():
        rows.append(
            {
                "method": name,
                "source": f"ours ({dataset}, {m.get('num_classes', '?')} classes, {m.get('num_videos', '?')} videos)",
                "clip_hit1": m["clip_hit1"],
                "video_hit1": m["video_hit1"],
                "video_hit5": m["video_hit5"],
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# representation: linear classifier and t-SNE on pool5 features
# --------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Per-video features: ``features`` (V, D), ``labels`` (V,), ``video_ids`` (V,), class names."""

    features: np.ndarray
    labels: np.ndarray
    video_ids: List[str]
    classes: List[str]
    source: str = ""

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, index: Sequence[int]) -> "FeatureSet":
        """The videos at ``index``, in that order."""
        index = np.asarray(index, dtype=int)
        return FeatureSet(
            self.features[index], self.labels[index], [self.video_ids[i] for i in index], self.classes, self.source
        )


def load_features(path: PathLike) -> FeatureSet:
    """Per-video features written by ``p3d predict`` (``.pt`` or ``.npz``, see
    :mod:`p3d_lightning.features`): the pool5 feature averaged over each video's clips.

    Raises ``FileNotFoundError`` naming the path, and ``ValueError`` when the file has no
    ``features``/``labels`` or a video has no label (-1), since a linear classifier needs them.
    """
    from p3d_lightning.features import load_features as _load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no features at {path}: write them with `p3d predict --config <experiment.yaml> "
            "--ckpt_path <checkpoint> --features.output_dir <folder>`"
        )
    data = _load(str(path))
    missing = [k for k in ("features", "labels") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing {missing}; expected a file written by p3d predict (FeatureWriter)")
    features = np.asarray(torch.as_tensor(data["features"]).float().numpy())
    labels = np.asarray(torch.as_tensor(data["labels"]).long().numpy())
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"{path}: 'features' {features.shape} and 'labels' {labels.shape} do not match (V, D) / (V,)")
    if (labels < 0).any():
        raise ValueError(f"{path}: {int((labels < 0).sum())} video(s) have no label (-1); a linear classifier needs labels")
    ids = [str(v) for v in data.get("video_ids", range(len(labels)))]
    classes = [str(c) for c in data.get("classes", [])]
    return FeatureSet(features, labels, ids, classes, str(path))


def split_features(features: FeatureSet, test_fraction: float = 0.3, seed: int = 0) -> Tuple[FeatureSet, FeatureSet]:
    """A stratified random train/test split of one feature set (every class on both sides when
    it has at least two videos)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(features.labels):
        idx = np.flatnonzero(features.labels == label)
        rng.shuffle(idx)
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return features.subset(sorted(train)), features.subset(sorted(test))


def linear_probe(
    train: FeatureSet,
    test: FeatureSet,
    classifier: str = "svm",
    C: float = 1.0,
    seed: int = 0,
) -> Dict[str, Any]:
    """Train a linear classifier on ``train`` features, report accuracy on ``test`` (percent).

    As the paper's "representation + linear SVM" rows: features are L2-normalised, then
    ``classifier="svm"`` fits scikit-learn's ``LinearSVC`` (one-vs-rest), ``"logreg"`` a
    ``LogisticRegression``. Returns ``accuracy``, ``train_accuracy``, ``num_train``,
    ``num_test``, ``num_classes`` and the fitted ``model``.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    if classifier == "svm":
        from sklearn.svm import LinearSVC

        clf = LinearSVC(C=C, random_state=seed, max_iter=10000)
    elif classifier == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    else:
        raise ValueError(f"classifier must be 'svm' or 'logreg', got {classifier!r}")
    if len(np.unique(train.labels)) < 2:
        raise ValueError(f"the training features ({train.source or 'train'}) hold fewer than 2 classes")
    model = make_pipeline(Normalizer(), clf)
    model.fit(train.features, train.labels)
    return {
        "accuracy": 100.0 * float((model.predict(test.features) == test.labels).mean()),
        "train_accuracy": 100.0 * float((model.predict(train.features) == train.labels).mean()),
        "num_train": len(train),
        "num_test": len(test),
        "num_classes": int(len(np.unique(np.concatenate([train.labels, test.labels])))),
        "model": model,
    }


def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: Optional[float] = None) -> np.ndarray:
    """A 2-D t-SNE embedding (V, 2) of L2-normalised features (the paper's feature visualisation).

    ``perplexity`` defaults to 30, reduced for small sets (t-SNE needs it below the number of
    points).
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if perplexity is None:
        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def plot_embedding(embedding: np.ndarray, labels: np.ndarray, classes: Sequence[str] = (), ax: Any = None, title: str = ""):
    """Scatter a 2-D embedding coloured by class (legend with class names when given)."""
    fig, ax = _new_ax(ax, (5, 5))
    labels = np.asarray(labels)
    for label in np.unique(labels):
        pts = embedding[labels == label]
        name = classes[label] if 0 <= label < len(classes) else str(label)
        ax.scatter(pts[:, 0], pts[:, 1], s=14, label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(np.unique(labels)) <= 20:
        ax.legend(fontsize=7, markerscale=1.2, loc="best")
    return fig


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m p3d_lightning.reports clip-predictions --config X.yaml --ckpt Y.ckpt --out Z.pt``:
    save the per-clip test scores that ``03_table2_protocol.ipynb`` reads."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m p3d_lightning.reports", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cp = sub.add_parser("clip-predictions", help="run a checkpoint on a test loader and save per-clip scores")
    cp.add_argument("--config", required=True, help="the experiment YAML the checkpoint was trained with")
    cp.add_argument("--ckpt", required=True, help="a P3DClassifier checkpoint (.ckpt)")
    cp.add_argument("--out", required=True, help="the .pt file to write")
    cp.add_argument("--stage", default="test", choices=["test", "val", "predict"])
    cp.add_argument("--device", default="cpu")
    cp.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    args = parser.parse_args(argv)
    from p3d_lightning.experiment import parse_overrides

    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    out = clip_predictions_from_checkpoint(args.ckpt, args.config, args.out, args.stage, overrides, args.device)
    metrics = protocol_metrics(load_clip_predictions(out))
    print(f"wrote {out}: clip hit@1 {metrics['clip_hit1']:.1f}%, video hit@1 {metrics['video_hit1']:.1f}%, "
          f"video hit@{metrics['top_k_video']} {metrics['video_hit5']:.1f}% "
          f"({metrics['num_videos']} videos, {metrics['num_clips']} clips)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
