"""What every figure of the ablation shares: one colour and one name per Table 1 method, a
figure that needs no pyplot, and PNG writing.

The colour of a model is fixed by its Table 1 row (ResNet-50 blue, P3D-A orange, P3D-B green,
P3D-C red, P3D ResNet purple), so the same model has the same colour in both panels of the
accuracy-vs-speed figure, in the training curves and in the notebook. Figures are built as
plain :class:`matplotlib.figure.Figure` objects (no pyplot, no backend switch): the runner
writes them headless, and a notebook passes its own pyplot figure to draw a live one.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from p3d_lightning.ablation.results import atomic_write
from p3d_lightning.paper import TABLE1

__all__ = ["PALETTE", "legend_handles", "method_name", "model_colours", "new_figure", "save_png", "short_title"]

#: matplotlib's default colour cycle (tab10), written out so a colour does not depend on rcParams.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def method_name(model: str) -> str:
    """The paper's name of a Table 1 model (``p3d_a`` -> ``P3D-A ResNet``); a row of a
    clip-length ablation named ``<model>_t<frames>`` -> ``P3D ResNet, 8 frames``; else the name."""
    paper = TABLE1.get(str(model))
    if paper:
        return paper.method
    base, sep, frames = str(model).rpartition("_t")
    if sep and frames.isdigit() and base in TABLE1:
        return f"{TABLE1[base].method}, {int(frames)} frames"
    return str(model)


def model_colours(models: Iterable[str]) -> Dict[str, str]:
    """One colour per model: Table 1's five keep theirs always; any other name gets the next
    free colour of :data:`PALETTE` in the order given (pass the same names to every figure)."""
    colours = {name: PALETTE[i] for i, name in enumerate(TABLE1)}
    free = iter(PALETTE[len(TABLE1):] * 8)  # wraps round after 5 extra models
    for name in models:
        if str(name) not in colours:
            colours[str(name)] = next(free)
    return colours


def new_figure(figsize: Tuple[float, float], figure: Any = None):
    """``figure`` (a caller's, e.g. ``plt.figure()`` in a notebook) resized, else a new figure
    without pyplot; both with constrained layout, which keeps titles and legends inside."""
    if figure is None:
        from matplotlib.figure import Figure

        return Figure(figsize=figsize, layout="constrained")
    figure.set_size_inches(*figsize)
    figure.set_layout_engine("constrained")
    return figure


def save_png(figure: Any, path: os.PathLike, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG (atomically; ``bbox_inches="tight"`` so nothing is cut off) and
    close it if pyplot manages it."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # a figure of this module's own is not pyplot's; closing it is a no-op
        pyplot.close(figure)
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path


def short_title(title: Optional[str]) -> str:
    """A figure title without a machine's absolute path: a path becomes its last part."""
    text = str(title or "").strip()
    if os.path.isabs(text) or os.sep in text.rstrip(os.sep):
        return Path(text).name
    return text


def legend_handles(colours: Mapping[str, str], labels: Mapping[str, str]):
    """Colour patches for a figure legend, one per model of ``labels`` (in its order)."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=colours[m], edgecolor="none", label=label) for m, label in labels.items()]
