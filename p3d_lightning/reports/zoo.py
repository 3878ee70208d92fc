"""Notebook 02 (``02_model_zoo.ipynb``): the model zoo beside the paper's sizes and depths.

:func:`zoo_table` measures parameters, fp32 size, depth and GMACs of every architecture on the
``meta`` device (no memory, no compute); :func:`plot_depth_vs_size` is the paper's Figure 1
style plot, bubble area ~ :func:`paper_accuracy`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch

from p3d_lightning.paper import C3D_SIZE_MB, PAPER_DEPTHS, PAPER_PARAM_COUNTS, PAPER_SIZES_MB, TABLE1, TABLE2
from p3d_lightning.reports.common import new_ax

__all__ = ["ZOO_MODELS", "count_layers", "zoo_table", "paper_accuracy", "plot_depth_vs_size"]

#: Architectures of the zoo notebook: Table 1's five, then the deeper P3D ResNets.
ZOO_MODELS = ("resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d", "p3d131", "p3d199")

#: P3D-A/B/C have exactly the mixed network's layers and shapes (only the wiring differs),
#: so the paper's facts stated for "P3D ResNet" (size, depth, parameters) apply to them too.
_SAME_AS_MIXED = {"p3d_a": "p3d", "p3d_b": "p3d", "p3d_c": "p3d"}


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
    fig, ax = new_ax(ax, (8, 4.5))
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

