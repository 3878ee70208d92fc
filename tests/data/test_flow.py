"""data/flow.py: flow quantisation, TV-L1 / Farneback extraction (layout, range, resume, bad videos),
the flow-frames dataset through VideoDataModule, and p3d199_flow (tiny width) through the p3d CLI.
(The p3d-flow command: tests/commands/test_flow.py.)"""
import glob
import os
import warnings

import numpy as np
import pytest
import torch
import yaml

from p3d_lightning.data import write_video
from p3d_lightning.data.dataset import BadVideoWarning
from p3d_lightning.data.datamodule import VideoDataModule
from p3d_lightning.data.flow import (FAILURES_FILENAME, FLOW_META, dequantize_flow, extract_flow, extract_video_flow,
                                     flow_dir, quantize_flow, read_flow_frames)

cv2 = pytest.importorskip("cv2", reason="opencv-contrib-python-headless (the [flow] / [dev] extra)")


def test_quantisation_maps_the_bound_to_0_255():
    f = np.array([-30.0, -20.0, 0.0, 10.0, 20.0, 25.0], np.float32)
    q = quantize_flow(f, bound=20)
    assert q.dtype == np.uint8 and q.tolist() == [0, 0, 128, 191, 255, 255]
    assert np.allclose(dequantize_flow(q, 20)[1:5], [-20, 0, 10, 20], atol=0.08)  # half a step (40 / 255 px)


def moving_square(path, frames=6, h=32, w=40, step=2):
    video = np.full((frames, h, w, 3), 40, np.uint8)
    for t in range(frames):
        video[t, 10:22, 6 + step * t:18 + step * t] = 220  # moves right by `step` px per frame
    write_video(str(path), video, fps=10)


@pytest.mark.parametrize("method", ["farneback", "tvl1"])
def test_extraction_layout_range_and_resume(tmp_path, method):
    root, flow_root = tmp_path / "videos", tmp_path / "flow"
    (root / "cls").mkdir(parents=True)
    video = root / "cls" / "v_a.avi"
    moving_square(video)
    out = flow_dir(str(flow_root), str(root), str(video))
    assert out == str(flow_root / "cls" / "v_a")
    status, meta = extract_video_flow(str(video), out, method=method, bound=20)
    assert status == "done" and meta["num_frames"] == 5 and (meta["height"], meta["width"]) == (32, 40)
    names = sorted(os.listdir(out))
    assert names == [FLOW_META] + [f"x_{k:05d}.jpg" for k in range(1, 6)] + [f"y_{k:05d}.jpg" for k in range(1, 6)]
    clip = read_flow_frames(out, [0, 4, 4])
    assert clip.shape == (3, 32, 40, 2) and clip.dtype == torch.uint8
    square = clip[0, 12:20, 10:18].float()  # inside the moving square, first flow frame
    # 2 px/frame to the right: x = 128 + 2 * 255 / 40 = 140.75; no vertical motion
    assert abs(square[..., 0].mean() - 140.75) < 4 and abs(square[..., 1].mean() - 128) < 4
    # resume: a complete folder is skipped untouched; one without flow.json is redone
    stamp = os.path.getmtime(os.path.join(out, "x_00001.jpg"))
    assert extract_video_flow(str(video), out, method=method)[0] == "skipped"
    assert os.path.getmtime(os.path.join(out, "x_00001.jpg")) == stamp
    os.remove(os.path.join(out, FLOW_META))
    assert extract_video_flow(str(video), out, method=method)[0] == "done"
    assert not glob.glob(out + ".tmp-*")


def flow_source_tree(root):
    """``root/a/v_1.avi`` (a square moving right), ``root/b/v_2.avi`` (moving left) and
    ``root/b/v_bad.avi`` (not a video); returns ``root``."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    moving_square(root / "a" / "v_1.avi")
    moving_square(root / "b" / "v_2.avi", step=-1)
    (root / "b" / "v_bad.avi").write_text("not a video")
    return root


def test_extract_flow_reports_bad_videos_and_resumes(tmp_path):
    root = flow_source_tree(tmp_path / "videos")
    res = extract_flow([str(root / "a" / "v_1.avi"), str(root / "b" / "v_bad.avi")], str(root), str(tmp_path / "f"),
                       method="farneback", num_workers=1, progress=False)
    assert res["done"] == 1 and res["skipped"] == 0 and [p for p, _ in res["failed"]] == [str(root / "b" / "v_bad.avi")]
    failures = (tmp_path / "f" / FAILURES_FILENAME).read_text().splitlines()
    assert failures[0].startswith("# p3d-flow failures")
    assert failures[1].startswith(os.path.join("b", "v_bad.avi") + "\t")
    # a second run skips the finished video and still reports the bad one
    again = extract_flow([str(root / "a" / "v_1.avi"), str(root / "b" / "v_bad.avi")], str(root), str(tmp_path / "f"),
                         method="farneback", num_workers=1, progress=False)
    assert again["done"] == 0 and again["skipped"] == 1 and len(again["failed"]) == 1


@pytest.fixture(scope="module")
def tiny_flow(tiny_synthetic_root, tmp_path_factory):
    """Farneback flow of the tiny synthetic set (16 videos x 19 flow frames, 48x64)."""
    from p3d_lightning.data import load_annotations

    ann = load_annotations("synthetic", str(tiny_synthetic_root))
    flow_root = tmp_path_factory.mktemp("tiny_flow") / "flow"
    res = extract_flow([r.path for r in ann.train + ann.test], str(tiny_synthetic_root), str(flow_root),
                       method="farneback", num_workers=1, progress=False)
    assert res["done"] == 16 and not res["failed"]
    return tiny_synthetic_root, flow_root


def _flow_dm(root, flow_root, **kw):
    args = dict(dataset="synthetic", root=str(root), flow_root=str(flow_root), num_classes=4, clip_len=4,
                resize=(40, 52), crop_size=32, num_eval_clips=2, batch_size=4, num_workers=0, modality="flow",
                progress=False)
    args.update(kw)
    return VideoDataModule(**args)


def test_flow_clips_through_the_datamodule(tiny_flow, tmp_path):
    root, flow_root = tiny_flow
    dm = _flow_dm(root, flow_root)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.input_contract.modality, dm.input_contract.channel_order, dm.input_contract.normalization) == \
        ("flow", "xy", "imagenet")  # no architecture: the default normalisation, flow statistics
    batch = next(iter(dm.train_dataloader()))
    assert batch["clip"].shape == (4, 2, 4, 32, 32) and batch["clip"].dtype == torch.float32
    ev = next(iter(dm.test_dataloader()))
    assert ev["clip_idx"].tolist() == [0, 1, 0, 1] and ev["video_idx"].tolist() == [0, 0, 1, 1]
    caffe = _flow_dm(root, flow_root, normalization="caffe")
    caffe.setup("test")
    x = caffe.test_dataset[0]["clip"]
    assert x.shape == (2, 4, 32, 32) and x.min() >= -128 and x.max() <= 127  # 0-255 minus 128
    # same records and order as the RGB datasets, so video_idx match between the two streams
    rgb = VideoDataModule(dataset="synthetic", root=str(root), num_classes=4, clip_len=4, resize=(40, 52),
                          crop_size=32, num_eval_clips=2, num_workers=0, progress=False)
    rgb.setup("test")
    assert [v.video_id for v in rgb.test_dataset.videos] == [v.video_id for v in caffe.test_dataset.videos]
    # a video without flow frames is skipped like an unreadable video (strict: raises naming it)
    partial = tmp_path / "partial"
    import shutil

    shutil.copytree(flow_root, partial)
    victim = os.path.dirname(glob.glob(str(partial / "*" / "*" / FLOW_META))[0])
    os.remove(os.path.join(victim, FLOW_META))
    with pytest.warns(BadVideoWarning, match="flow frames incomplete"):
        dm2 = _flow_dm(root, partial)
        dm2.setup("fit")
    assert dm2.num_skipped == 1
    with pytest.raises(Exception, match="run p3d-flow"):
        _flow_dm(root, partial, strict=True).setup("fit")
    with pytest.raises(FileNotFoundError, match="p3d-flow"):
        _flow_dm(root, tmp_path / "nowhere").setup("fit")


def test_p3d199_flow_fit_test_predict_through_the_cli(tiny_flow, tmp_path, monkeypatch):
    from p3d_lightning.commands.p3d import main as p3d

    root, flow_root = tiny_flow
    monkeypatch.chdir(tmp_path)
    cfg = {
        "seed_everything": 0,
        "model": {"arch": "p3d199_flow", "in_channels": 2, "width_mult": 0.0625, "lr": 0.01, "partial_bn": False,
                  "channels_last": False},
        "data": {"dataset": "synthetic", "root": str(root), "flow_root": str(flow_root), "num_classes": 4,
                 "clip_len": 4, "resize": [40, 52], "crop_size": 32, "num_eval_clips": 2, "batch_size": 4,
                 "eval_batch_size": 8, "num_workers": 0, "progress": False},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 1, "max_epochs": -1, "precision": "32-true",
                    "limit_val_batches": 1, "limit_test_batches": 1, "limit_predict_batches": 1,
                    "enable_progress_bar": False, "check_val_every_n_epoch": 1,
                    "logger": [{"class_path": "pytorch_lightning.loggers.CSVLogger",
                                "init_args": {"save_dir": "logs", "name": "flow"}}],
                    "enable_model_summary": False},
        "features": {"output_dir": str(tmp_path / "feats")},
    }
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p3d(["fit", "--config", str(path)])
        ckpts = sorted(glob.glob(str(tmp_path / "**" / "last.ckpt"), recursive=True))
        assert ckpts, "fit wrote no last.ckpt"
        saved = torch.load(ckpts[0], map_location="cpu", weights_only=True)
        assert saved["VideoDataModule"]["input_contract"]["modality"] == "flow"
        assert saved["VideoDataModule"]["input_contract"]["mean"] == [128.0, 128.0]  # ModelCfg(p3d199_flow)
        p3d(["test", "--config", str(path), "--ckpt_path", ckpts[0]])
        p3d(["predict", "--config", str(path), "--ckpt_path", ckpts[0]])
    feats = glob.glob(str(tmp_path / "**" / "features.pt"), recursive=True)
    assert feats
    data = torch.load(feats[0], map_location="cpu", weights_only=True)
    n = data["scores"].shape[0]  # the videos of one predict batch
    assert n >= 1 and data["scores"].shape == (n, 4) and len(data["video_ids"]) == n
