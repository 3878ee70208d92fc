"""Reading a YAML config file whose errors name the file (shared by experiment and ablation configs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Type

import yaml


def read_yaml_mapping(path: os.PathLike, error: Type[Exception], what: str) -> Dict[str, Any]:
    """The YAML mapping in ``path``; ``error`` (naming the file) when it is missing, not valid
    YAML or not a mapping. ``what`` names the file's kind in the messages ("experiment config")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a YAML mapping, got {type(raw).__name__}")
    return raw
