"""predict -> per-video averaged pool5 features and scores, with ids and a manifest."""

import json

import pytest
import pytorch_lightning as pl
import torch

from p3d_lightning.features import FeatureWriter, aggregate_video_features, load_features
from p3d_lightning.module import P3DClassifier
from training_utils import quiet_warnings, tiny_datamodule

quiet_warnings()


def test_aggregate_averages_and_dedups():
    feat = torch.tensor([[1.0, 0], [3.0, 0], [5.0, 5], [1.0, 0]])  # last row: padding repeat of row 0
    probs = torch.tensor([[1.0, 0], [0.0, 1], [0.5, 0.5], [1.0, 0]])
    out = aggregate_video_features({
        "feature": feat, "probs": probs, "video_idx": torch.tensor([2, 2, 0, 2]),
        "clip_idx": torch.tensor([0, 1, 0, 0]), "label": torch.tensor([1, 1, 0, 1]),
    })
    assert out["video_idx"].tolist() == [0, 2]
    assert out["num_clips"].tolist() == [1, 2]
    torch.testing.assert_close(out["features"], torch.tensor([[5.0, 5], [2.0, 0]]))
    torch.testing.assert_close(out["scores"], torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert out["labels"].tolist() == [0, 1]


def test_aggregate_leaves_out_invalid_clips():
    feat = torch.tensor([[1.0, 0], [9.0, 9], [0.0, 0], [0.0, 0], [4.0, 2]])
    out = aggregate_video_features({
        "feature": feat, "probs": torch.ones(5, 2) / 2, "video_idx": torch.tensor([0, 0, 1, 1, 2]),
        "clip_idx": torch.tensor([0, 1, 0, 1, 0]), "label": torch.tensor([0, 0, 1, 1, 2]),
        "valid": torch.tensor([True, False, False, False, True]),
    })
    assert out["video_idx"].tolist() == [0, 2]  # video 1 has no valid clip: no row
    torch.testing.assert_close(out["features"], torch.tensor([[1.0, 0], [4.0, 2]]))  # not (1+9)/2
    assert out["num_clips"].tolist() == [1, 1] and out["num_failed_clips"].tolist() == [1, 0]
    assert out["failed_video_idx"].tolist() == [1] and out["failed_clips"].tolist() == [[0, 1], [1, 0], [1, 1]]
    assert out["labels"].tolist() == [0, 2]


def test_predict_skips_a_video_broken_after_setup(tiny_synthetic_root, tmp_path):
    import shutil

    from p3d_lightning.data.dataset import BadVideoWarning

    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic_root, root)
    dm = tiny_datamodule(str(root), num_eval_clips=2)
    dm.setup("predict")
    videos = dm.predict_dataset.videos
    broken = videos[2]
    open(broken.path, "wb").close()  # truncated after indexing
    model = P3DClassifier("p3d_tiny", num_classes=4)
    writer = FeatureWriter(output_dir=str(tmp_path / "feats"), filename="f")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    with pytest.warns(BadVideoWarning, match="1 videos have no features"):
        trainer.predict(model, datamodule=dm, return_predictions=False)
    data = load_features(writer.output_path)
    assert broken.video_id not in data["video_ids"]  # no substitute's feature under its name
    assert data["video_ids"] == [v.video_id for v in videos if v is not broken]
    assert data["num_clips"].tolist() == [2] * (len(videos) - 1)
    assert data["labels"].tolist() == [v.label for v in videos if v is not broken]
    assert writer.failed_video_ids == [broken.video_id]
    failures = json.loads(open(writer.manifest_path).read())["decode_failures"]
    assert failures["num_failed_clips"] == 2 and failures["videos_without_features"] == [broken.video_id]
    assert failures["videos_with_failed_clips"] == []


@pytest.mark.parametrize("fmt", ["pt", "npz"])
def test_predict_writes_features_ids_and_manifest(fmt, tiny_synthetic_root, tmp_path):
    dm = tiny_datamodule(str(tiny_synthetic_root), num_eval_clips=3)
    model = P3DClassifier("p3d_tiny", num_classes=4, inference_fast_path=fmt == "npz")
    writer = FeatureWriter(output_dir=str(tmp_path / "feats"), filename="ucf", format=fmt)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(model, datamodule=dm, return_predictions=False)

    data = load_features(str(tmp_path / "feats" / f"ucf.{fmt}"))
    videos = dm.predict_dataset.videos
    assert data["video_ids"] == [v.video_id for v in videos]
    assert data["features"].shape == (len(videos), model.model.num_features)
    assert data["scores"].shape == (len(videos), 4)
    torch.testing.assert_close(data["scores"].sum(1), torch.ones(len(videos)))
    assert data["num_clips"].tolist() == [3] * len(videos)
    assert data["labels"].tolist() == [v.label for v in videos]

    # the stored feature is the mean over the video's clips of forward_features
    model.eval()
    clips = torch.stack([dm.predict_dataset[i]["clip"] for i in range(3)])  # video 0, clips 0..2
    with torch.no_grad():
        expected = model.model.forward_features(clips).mean(0)
    tol = dict(rtol=0.05, atol=0.05) if fmt == "npz" else dict(rtol=1e-4, atol=1e-5)  # npz run: bf16 fast path
    torch.testing.assert_close(data["features"][0], expected, **tol)

    manifest = json.loads((tmp_path / "feats" / "ucf.manifest.json").read_text())
    assert manifest["file"] == f"ucf.{fmt}" and manifest["num_videos"] == len(videos)
    assert manifest["feature_dim"] == model.model.num_features and manifest["model"]["arch"] == "p3d_tiny"
    assert manifest["classes"] == dm.classes


def test_ddp_shards_are_merged_and_read_safely(tmp_path):
    """The two-rank path of on_predict_epoch_end (shards written, merged by rank 0 through
    weights_only loading, padding duplicates dropped), with a stand-in trainer per rank."""
    from types import SimpleNamespace

    def trainer(rank):
        strategy = SimpleNamespace(barrier=lambda name=None: None)
        return SimpleNamespace(global_rank=rank, world_size=2, strategy=strategy, datamodule=None,
                               predict_dataloaders=None, ckpt_path=None)

    def clips(videos, feature):
        n = len(videos)
        return {"feature": torch.full((n, 3), feature), "probs": torch.full((n, 2), 0.5),
                "video_idx": torch.tensor(videos), "clip_idx": torch.zeros(n, dtype=torch.long),
                "label": torch.tensor(videos), "valid": torch.ones(n, dtype=torch.bool)}

    writers = [FeatureWriter(output_dir=str(tmp_path), filename="f") for _ in range(2)]
    (tmp_path / ".f.parts").mkdir()  # rank 0 makes it before the first barrier
    module = SimpleNamespace(hparams={})
    writers[1].write_on_batch_end(None, module, clips([1, 0], 2.0), None, None, 0, 0)  # 0 is padding
    writers[1].on_predict_epoch_end(trainer(1), module)
    writers[0].write_on_batch_end(None, module, clips([0], 1.0), None, None, 0, 0)
    writers[0].on_predict_epoch_end(trainer(0), module)
    out = load_features(str(tmp_path / "f.pt"))
    assert out["video_idx"].tolist() == [0, 1] and out["num_clips"].tolist() == [1, 1]
    assert out["features"][:, 0].tolist() == [1.0, 2.0]  # rank 0's clip of video 0 kept, the pad dropped
    assert not (tmp_path / ".f.parts").exists()
