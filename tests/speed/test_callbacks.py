"""Table 1 callbacks on a tiny model: exact sizes, positive speeds recorded with their settings."""

import pytorch_lightning as pl
import torch

from p3d_lightning.speed.callbacks import InferenceSpeedCallback, ModelStatsCallback, TrainThroughputCallback
from p3d_lightning.models import create_model
from p3d_lightning.module import P3DClassifier


class _RandomClips(pl.LightningDataModule):
    clip_len = 16
    crop_size = 32

    def __init__(self, n=12, num_classes=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "clip": torch.randn(3, self.clip_len, self.crop_size, self.crop_size, generator=g),
                "label": torch.tensor(i % num_classes),
                "video_idx": torch.tensor(i),
                "clip_idx": torch.tensor(0),
            }
            for i in range(n)
        ]

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.items, batch_size=3)


def test_model_stats_exact_and_speed_recorded(tmp_path):
    module = P3DClassifier(arch="p3d_tiny", num_classes=4, lr_schedule="constant", partial_bn=False)
    stats, speed, thr = ModelStatsCallback(), InferenceSpeedCallback(batch_size=2, warmup=1, repeats=2), TrainThroughputCallback(warmup_batches=1)
    trainer = pl.Trainer(
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        callbacks=[stats, speed, thr], default_root_dir=tmp_path, precision="32-true",
    )
    trainer.fit(module, datamodule=_RandomClips())

    expected_params = sum(p.numel() for p in create_model("p3d_tiny", num_classes=4).parameters())
    assert stats.results["params"] == expected_params
    assert stats.results["size_mb"] == expected_params * 4 / 2**20
    assert stats.results["clip_shape"] == (3, 16, 32, 32)
    assert stats.results["gmacs_per_clip"] > 0

    r = speed.results
    assert r["infer_clips_per_s"] > 0
    assert r["infer_frames_per_s"] == r["infer_clips_per_s"] * 16
    assert r["infer_batch_size"] == 2
    assert r["infer_threads"] == torch.get_num_threads()
    assert r["infer_device"] and r["infer_precision"]

    assert thr.results["train_clips_per_s"] > 0
    assert thr.results["train_timed_clips"] == 3 * 3  # 4 batches of 3, the first untimed


def test_stats_need_a_clip_shape_or_a_datamodule_with_one(tmp_path):
    import pytest

    from p3d_lightning.speed.callbacks import infer_clip_shape

    trainer = pl.Trainer(logger=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="clip_len"):
        infer_clip_shape(trainer, P3DClassifier(arch="p3d_tiny", num_classes=4))
