"""Lazy package exports: a package lists ``{public name: submodule}`` and the submodule is
imported on first use, so importing the package itself loads nothing heavy (torch, Lightning)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Iterable, Tuple


def lazy_exports(package: str, namespace: Dict[str, Any], exports: Dict[str, str],
                 submodules: Iterable[str] = ()) -> Tuple[Callable[[str], Any], Callable[[], list]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to
    the submodule defining it; ``submodules`` may also be reached as attributes. A value is
    cached in ``namespace`` (the package's ``globals()``) after its first import."""
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
