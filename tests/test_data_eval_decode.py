"""One-decode evaluation: ``read_clips`` equals per-clip ``read_frames`` exactly, the per-video
loader yields exactly the per-clip loader's batches, a file broken mid-run still gets per-clip
handling, and the DDP video metric is unchanged (two processes, one decode per video, vs. one
process seeking per clip)."""
import shutil

import numpy as np
import pytest
import torch

from p3d_lightning.data.decode import keyframe_indices, read_clips, read_frames, write_video
from p3d_lightning.data.sampling import eval_clip_indices
from training_utils import quiet_warnings, tiny_datamodule

quiet_warnings()


def _frames(n=40, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w + n, 3), dtype=np.uint8)
    return np.stack([base[:, t:t + w] for t in range(n)])  # panning texture: every frame differs


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaldecode")
    avi, mp4 = str(d / "a.avi"), str(d / "b.mp4")
    write_video(avi, _frames(), fps=25, codec="mpeg4", gop_size=12)
    write_video(mp4, _frames(seed=1), fps=25, codec="libx264", gop_size=40, bframes=3)  # one keyframe, B-frames
    return avi, mp4


@pytest.mark.parametrize("which", [0, 1])
def test_read_clips_equals_per_clip_reads(videos, which):
    path = videos[which]
    clips = [eval_clip_indices(40, 8, 1, 20, k) for k in range(20)]
    clips += [[39, 45, 3, 3], list(range(0, 16, 2)), [30]]  # past the end, repeats, any order, strided
    got = read_clips(path, clips, size=(20, 26))
    assert len(got) == len(clips)
    for c, g in zip(clips, got):
        assert torch.equal(g, read_frames(path, c, size=(20, 26)))
    # clips far apart are separate runs (one seek each) and still exact; keyframes=[] forces one pass
    far = [[0, 1], [30, 31]]
    for kf in (None, []):
        for c, g in zip(far, read_clips(path, far, keyframes=kf)):
            assert torch.equal(g, read_frames(path, c))
    assert keyframe_indices(videos[0]) == [0, 12, 24, 36] and keyframe_indices(videos[1]) == [0]
    with pytest.raises(ValueError, match="non-empty"):
        read_clips(path, [[]])


def _cat(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_video_loader_equals_per_clip_loader(tiny_synthetic_root):
    per_clip = tiny_datamodule(str(tiny_synthetic_root), num_eval_clips=3, batch_size=4, eval_decode="clip")
    per_video = tiny_datamodule(str(tiny_synthetic_root), num_eval_clips=3, batch_size=7, eval_decode="video")
    for dm in (per_clip, per_video):
        dm.setup("fit")
    a = _cat(list(per_clip.val_dataloader()))
    loader = per_video.val_dataloader()
    batches = list(loader)
    assert len(loader.dataset) == 8 and len(batches) == 4  # 7 // 3 = 2 videos (6 clips) per batch
    assert [b["clip"].shape[0] for b in batches] == [6, 6, 6, 6]
    b = _cat(batches)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="eval_decode"):
        tiny_datamodule(str(tiny_synthetic_root), eval_decode="frames")


def test_broken_video_falls_back_to_per_clip_handling(tiny_synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_synthetic_root, root)
    dm = tiny_datamodule(str(root), num_eval_clips=3)
    dm.setup("fit")
    ds = dm.val_dataset
    open(ds.videos[1].path, "wb").close()  # broken after indexing
    with pytest.warns(UserWarning, match="failed to decode"):
        item = ds.load_video(1)
    assert item["valid"].tolist() == [False] * 3 and item["clip_idx"].tolist() == [0, 1, 2]
    assert item["video_idx"].tolist() == [1, 1, 1] and item["clip"].abs().sum() == 0
    assert ds.load_video(0)["valid"].all()
    with pytest.raises(ValueError, match="evaluation"):
        dm.train_dataset.load_video(0)


def test_ddp_video_metric_unchanged(tiny_synthetic_root, tmp_path):
    """7 test videos x 3 clips on 2 ranks with one decode per video (a padded, repeated video)
    give exactly the single-process per-clip-seeking metrics."""
    import pytorch_lightning as pl

    from p3d_lightning.module import P3DClassifier

    root = tmp_path / "odd"
    shutil.copytree(tiny_synthetic_root, root)
    lines = (root / "testlist01.txt").read_text().splitlines()
    (root / "testlist01.txt").write_text("\n".join(lines[:-1]) + "\n")
    torch.manual_seed(0)
    model = P3DClassifier("p3d_tiny", num_classes=4)
    with torch.no_grad():
        model.model.fc.weight.mul_(50)
    ckpt = tmp_path / "m.ckpt"
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(ckpt)

    def validate(devices, eval_decode):
        dm = tiny_datamodule(str(root), num_eval_clips=3, batch_size=4, eval_decode=eval_decode)
        t = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                       logger=False, enable_progress_bar=False, enable_model_summary=False, precision="32-true")
        return t.validate(P3DClassifier.load_from_checkpoint(ckpt), datamodule=dm, verbose=False)[0]

    single = validate(1, "clip")
    double = validate(2, "video")
    assert single["val/num_videos"] == double["val/num_videos"] == 7
    for key in ("val/video_acc1", "val/video_acc5", "val/clip_acc1", "val/clip_acc5", "val/failed_clips"):
        assert double[key] == pytest.approx(single[key], abs=1e-7), key
