"""data/prep.py (p3d-prep's library) on tiny generated videos: manifest, verification, re-run skips,
a broken source reported as p3d-prescan reports it, a verification mismatch listed and not kept.
(The command's output: tests/commands/test_prep.py.)"""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from p3d_lightning.data import prep
from p3d_lightning.data.container import keyframe_indices, probe_video
from p3d_lightning.data.decode import read_all_frames
from p3d_lightning.data.encode import write_video
from p3d_lightning.data.prescan import check_video


def _smooth(n, h, w, seed):
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.05, 0.2, 2)
    return np.stack([np.stack([(127 + 100 * np.sin(a * x + b * y + 0.3 * t + c)).astype(np.uint8)
                               for c in range(3)], -1) for t in range(n)])


def source_tree(tmp_path):
    """``tmp_path/src``: an mpeg4 .avi, an H.264 .mp4 with B-frames, a broken .avi and a split
    file; returns ``(src, tmp_path / "dst")``."""
    src = tmp_path / "src"
    for d in ("ClassA", "ClassB"):
        (src / d).mkdir(parents=True)
    write_video(str(src / "ClassA" / "a1.avi"), _smooth(30, 48, 64, 0), codec="mpeg4", gop_size=12)
    write_video(str(src / "ClassB" / "b1.mp4"), _smooth(30, 64, 96, 1), codec="libx264", gop_size=30, bframes=2)
    (src / "ClassB" / "broken.avi").write_bytes(b"not a video at all")
    (src / "trainlist01.txt").write_text("ClassA/a1.avi 1\nClassB/b1.mp4 2\n")
    return src, tmp_path / "dst"


@pytest.fixture
def tree(tmp_path):
    return source_tree(tmp_path)


def test_prepare_tree(tree):
    src, dst = tree
    s = prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32, gop=4), progress=False)
    assert s["prepared"] == ["ClassA/a1.avi", "ClassB/b1.mp4"] and s["bad"] == ["ClassB/broken.avi"]
    assert s["reasons"]["ClassB/broken.avi"] == check_video(str(src / "ClassB" / "broken.avi"))  # as prescan says
    assert (dst / "trainlist01.txt").read_text() == (src / "trainlist01.txt").read_text()  # split files copied
    for rel, hw in (("ClassA/a1.avi", (32, 42)), ("ClassB/b1.mp4", (32, 48))):
        out = probe_video(str(dst / rel))
        assert (out.num_frames, out.fps, (out.height, out.width)) == (30, 25.0, hw)
        assert keyframe_indices(str(dst / rel)) == list(range(0, 30, 4))  # fixed GOP, no B-frame reordering
        a = read_all_frames(str(dst / rel)).float()
        b = read_all_frames(str(src / rel), size=hw).float()
        psnr = 10 * np.log10(255 ** 2 / float(((a - b) ** 2).mean()))
        assert psnr > 25, (rel, psnr)
    m = json.loads((dst / prep.MANIFEST_FILENAME).read_text())
    e = m["files"]["ClassB/b1.mp4"]
    assert e["status"] == "ok" and e["source"]["frames"] == 30 and e["source"]["fps"] == 25.0
    assert e["source"]["size"] == os.path.getsize(src / "ClassB" / "b1.mp4") and e["source"]["mtime"] > 0
    assert e["settings"] == {"short_side": 32, "gop": 4, "codec": "mpeg4", "quality": 3}
    assert e["output"]["size"] == os.path.getsize(dst / "ClassB" / "b1.mp4")
    assert "ClassB/broken.avi\t" in (dst / "p3d_quarantine.txt").read_text()
    assert not [f for f in os.listdir(dst / "ClassA") if "p3d-prep" in f]  # no temporary files left

    # re-run: nothing changed, nothing re-encoded; a touched source and then new settings are redone
    again = prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32, gop=4), progress=False)
    assert again["prepared"] == [] and len(again["skipped"]) == 3 and again["bad"] == ["ClassB/broken.avi"]
    os.utime(src / "ClassA" / "a1.avi", (1, 1))
    again = prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32, gop=4), progress=False)
    assert again["prepared"] == ["ClassA/a1.avi"]
    again = prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32, gop=6), progress=False)
    assert again["prepared"] == ["ClassA/a1.avi", "ClassB/b1.mp4"]


def test_mismatch_is_listed_not_kept(tree, monkeypatch):
    src, dst = tree
    real = prep.probe_video

    def short_output(path, validate=True):
        meta = real(path, validate)
        return dataclasses.replace(meta, num_frames=meta.num_frames - 1) if "p3d-prep" in path else meta

    monkeypatch.setattr(prep, "probe_video", short_output)
    s = prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32), progress=False)
    assert s["mismatched"] == ["ClassA/a1.avi", "ClassB/b1.mp4"] and s["prepared"] == []
    assert "29 frames instead of the source's 30" in s["reasons"]["ClassA/a1.avi"]
    assert not (dst / "ClassA" / "a1.avi").exists() and not os.listdir(dst / "ClassA")
    assert "ClassA/a1.avi\t" in (dst / "p3d_quarantine.txt").read_text()
    monkeypatch.setattr(prep, "probe_video", real)  # fixed: a re-run redoes the mismatched files
    assert prep.prepare_tree(str(src), str(dst), prep.PrepSettings(short_side=32), progress=False)["prepared"] == [
        "ClassA/a1.avi", "ClassB/b1.mp4"]


def test_bad_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="--gop"):
        prep.PrepSettings(gop=0).check()
    with pytest.raises(ValueError, match="--quality for mpeg4"):
        prep.PrepSettings(quality=40).check()
    with pytest.raises(FileNotFoundError, match="source root"):
        prep.prepare_tree(str(tmp_path / "nope"), str(tmp_path / "out"), progress=False)


def test_datamodule_reads_the_prepared_tree(tiny_synthetic_root, tmp_path):
    """``root`` pointed at the prepared tree: same videos, labels and clip keys, frames close."""
    from training_utils import tiny_datamodule

    dst = tmp_path / "prepared"
    s = prep.prepare_tree(str(tiny_synthetic_root), str(dst), prep.PrepSettings(short_side=None), progress=False)
    assert len(s["prepared"]) == 16 and not s["bad"] and not s["mismatched"]
    batches = []
    for root in (tiny_synthetic_root, dst):
        dm = tiny_datamodule(str(root), num_eval_clips=2, batch_size=4)
        dm.setup("fit")
        batches.append(next(iter(dm.val_dataloader())))
    a, b = batches
    for key in ("label", "video_idx", "clip_idx", "valid"):
        assert torch.equal(a[key], b[key]), key
    assert (a["clip"] - b["clip"]).abs().mean() < 0.1  # normalised units; re-encoding is lossy
