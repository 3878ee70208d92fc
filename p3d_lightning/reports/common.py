"""What every notebook page shares: its parameters from the environment and a fresh axes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

__all__ = ["PathLike", "env_path", "env_mapping", "new_ax"]

PathLike = Union[str, os.PathLike]


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


def new_ax(ax: Any, figsize: Tuple[float, float]):
    """``(figure, axes)``: the caller's ``ax`` (drawing into a grid of subplots) or a new figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax
