"""The video index: probes once, caches beside the data keyed by path+size+mtime."""
import os

import numpy as np

import p3d_lightning.data.index as index_mod
from p3d_lightning.data.container import VideoMeta
from p3d_lightning.data.encode import write_video
from p3d_lightning.data.index import INDEX_FILENAME, build_index, default_cache_path


def _video(path, t=10):
    write_video(str(path), np.zeros((t, 16, 16, 3), np.uint8))


def test_cache_roundtrip_and_invalidation(tmp_path, monkeypatch):
    a, b = tmp_path / "a.avi", tmp_path / "b.avi"
    _video(a, 10)
    b.write_text("not a video")
    cache = default_cache_path(str(tmp_path))
    assert cache == os.path.join(str(tmp_path), INDEX_FILENAME)
    res = build_index([str(a), str(b), str(tmp_path / "missing.avi")], cache, progress=False)
    assert res[str(a)] == VideoMeta(10, 25.0, 16, 16)
    assert isinstance(res[str(b)], str) and res[str(tmp_path / "missing.avi")] == "file does not exist"
    assert os.path.isfile(cache)

    def boom(*a, **k):
        raise AssertionError("probed again although cached")

    monkeypatch.setattr(index_mod, "probe_video", boom)
    again = build_index([str(a), str(b)], cache, progress=False)  # second run: no probing at all
    assert again[str(a)] == res[str(a)] and again[str(b)] == res[str(b)]
    monkeypatch.undo()

    _video(a, 12)  # replaced file: new size/mtime -> probed again
    os.utime(a, ns=(1, 1))
    assert build_index([str(a)], cache, progress=False)[str(a)].num_frames == 12


def test_read_only_root_uses_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("P3D_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    path = default_cache_path(str(tmp_path / "data"))
    assert path.startswith(str(tmp_path / "cache")) and path.endswith(".json")


def test_corrupt_cache_is_rebuilt(tmp_path):
    a = tmp_path / "a.avi"
    _video(a)
    cache = tmp_path / INDEX_FILENAME
    cache.write_text("{not json")
    assert build_index([str(a)], str(cache), progress=False)[str(a)].num_frames == 10
