"""The quarantine list: videos to skip, one ``<path relative to the dataset root><TAB><reason>`` line each.

``p3d-prescan`` and ``p3d-prep`` write it (``<root>/p3d_quarantine.txt`` by default), ``p3d-flow``
writes its failures in the same format, and ``VideoDataModule`` reads it. Plain files and
strings only, so the data commands can name the file before anything heavy is imported.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

__all__ = ["QUARANTINE_FILENAME", "read_quarantine", "write_quarantine"]

QUARANTINE_FILENAME = "p3d_quarantine.txt"
_HEADER = "# p3d-prescan quarantine list: <path relative to dataset root><TAB><reason>\n"


def write_quarantine(path: str, bad: Sequence[Tuple[str, str]], root: str, header: str = _HEADER) -> None:
    """Write ``(path, reason)`` pairs, in the given order, paths relative to ``root`` where they lie
    under it; ``header`` is the first (comment) line."""
    root = os.path.abspath(root)
    with open(path, "w", encoding="utf-8") as f:
        f.write(header)
        for p, r in bad:
            rel = os.path.relpath(p, root)
            f.write(f"{p if rel.startswith('..') else rel}\t{r}\n")


def read_quarantine(path: str, root: str) -> List[str]:
    """Absolute paths listed in a quarantine file (``p3d-prescan`` output).

    One path per line (relative to ``root`` or absolute), optionally followed by a tab and a
    reason; blank lines and ``#`` comments are ignored.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"quarantine file {os.path.abspath(path)!r} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            p = ln.split("\t")[0].strip()
            out.append(os.path.abspath(p if os.path.isabs(p) else os.path.join(root, p)))
    return out
