"""Cached video index: frame count, fps and size of every video, probed once.

The cache is a JSON file keyed by absolute path and validated by file size and mtime, so a
changed or replaced video is probed again and a second run with unchanged files starts at
once. Failed probes are cached too (with their reason), so bad files are not re-opened on
every run. Location: ``<root>/.p3d_index.json`` when ``root`` is writable, else
``$P3D_CACHE_DIR`` (default ``~/.cache/p3d_lightning``) ``/index-<hash of root>.json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Optional, Union

from tqdm.auto import tqdm

from .container import DecodeError, VideoMeta, probe_video

__all__ = ["INDEX_FILENAME", "default_cache_path", "build_index"]

INDEX_FILENAME = ".p3d_index.json"
_VERSION = 2  # 2: still images renamed as videos and directories are errors (re-probe old caches)


def default_cache_path(root: str) -> str:
    """Where the index of ``root`` lives: beside the data, or in a cache dir if read-only."""
    root = os.path.abspath(root)
    if os.access(root, os.W_OK):
        return os.path.join(root, INDEX_FILENAME)
    cache_dir = os.environ.get("P3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "p3d_lightning")
    return os.path.join(cache_dir, f"index-{hashlib.sha1(root.encode()).hexdigest()[:12]}.json")


def _load(cache_path: Optional[str]) -> dict:
    if not cache_path or not os.path.isfile(cache_path):
        return {}
    try:
        with open(cache_path, encoding="utf-8") as f:
            data = json.load(f)
        return data["entries"] if data.get("version") == _VERSION else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # unreadable cache: rebuild


def _save(cache_path: str, entries: dict) -> None:
    d = os.path.dirname(cache_path) or "."
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".p3d_index.", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": _VERSION, "entries": entries}, f)
        os.replace(tmp, cache_path)  # atomic: concurrent ranks never see a half-written file
    except OSError:
        pass  # a cache that cannot be written only costs time


def _stamp(path: str):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _probe(path: str, validate: bool) -> dict:
    try:
        m = probe_video(path, validate=validate)
        return {"meta": [m.num_frames, m.fps, m.width, m.height]}
    except DecodeError as e:
        return {"error": e.reason}


def build_index(
    paths: Iterable[str],
    cache_path: Optional[str] = None,
    progress: bool = True,
    validate: bool = True,
    num_threads: int = 4,
) -> Dict[str, Union[VideoMeta, str]]:
    """Probe every path (using and updating the cache at ``cache_path``).

    Returns ``{path: VideoMeta}`` for readable videos and ``{path: reason}`` (a string) for
    absent, empty or undecodable files. A tqdm progress bar shows the probing of new files.
    """
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    entries = _load(cache_path)
    result: Dict[str, Union[VideoMeta, str]] = {}
    todo = []
    for p in paths:
        try:
            size, mtime = _stamp(p)
        except OSError:
            result[p] = "file does not exist"
            continue
        e = entries.get(p)
        if e and e.get("size") == size and e.get("mtime") == mtime:
            result[p] = VideoMeta(*e["meta"]) if "meta" in e else e["error"]
        else:
            todo.append((p, size, mtime))
    if todo:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            probes = pool.map(lambda t: _probe(t[0], validate), todo)
            bar = tqdm(zip(todo, probes), total=len(todo), desc="indexing videos", unit="video",
                       disable=not progress, leave=False)
            for (p, size, mtime), e in bar:
                entries[p] = dict(e, size=size, mtime=mtime)
                result[p] = VideoMeta(*e["meta"]) if "meta" in e else e["error"]
        if cache_path:
            _save(cache_path, entries)
    return result
