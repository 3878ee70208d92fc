"""Tests of :mod:`p3d_lightning.reports.protocol` (notebook 03; hermetic, small, CPU)."""

from __future__ import annotations

import pytest
import torch

from p3d_lightning import reports
from p3d_lightning.paper import TABLE2


def test_protocol_metrics_by_hand():
    # 2 videos x 2 clips, 6 classes; the last row repeats (video 1, clip 1) as DDP padding would
    scores = torch.tensor(
        [
            [0.6, 0.4, 0, 0, 0, 0],  # video 0 clip 0: right (label 0)
            [0.4, 0.5, 0.1, 0, 0, 0],  # video 0 clip 1: wrong; the video mean (0.5 vs 0.45) is right
            [0, 0, 0, 0, 0.3, 0.7],  # video 1 clip 0: wrong (label 1)
            [0, 0.2, 0.1, 0.1, 0.1, 0.5],  # video 1 clip 1: wrong
            [0, 0.2, 0.1, 0.1, 0.1, 0.5],  # duplicate of the previous clip
        ]
    )
    pred = {
        "scores": scores,
        "labels": torch.tensor([0, 0, 1, 1, 1]),
        "video_idx": torch.tensor([0, 0, 1, 1, 1]),
        "clip_idx": torch.tensor([0, 1, 0, 1, 1]),
    }
    m = reports.protocol_metrics(pred)
    assert m["num_clips"] == 4 and m["num_videos"] == 2 and m["num_classes"] == 6
    assert m["clip_hit1"] == pytest.approx(25.0)
    assert m["video_hit1"] == pytest.approx(50.0)
    # video 1 mean: class 5 0.6, class 4 0.2, class 1 0.1, classes 2/3 0.05 -> label 1 is 3rd: hit@5
    assert m["video_hit5"] == pytest.approx(100.0)
    assert m["top_k_video"] == 5


def test_protocol_metrics_leave_out_failed_clips():
    """A clip that failed to decode (valid False) is not scored; a video with none left is a miss."""
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # video 0 clip 0: right
            [0.0, 0.0, 1.0],  # video 0 clip 1: FAILED (placeholder scores, would flip the video)
            [0.0, 0.0, 1.0],  # video 0 clip 2: wrong
            [0.0, 1.0, 0.0],  # video 1 clip 0: FAILED; video 1 has no valid clip -> a miss
            [0.0, 0.0, 1.0],  # video 2 clip 0: right (label 2)
        ]
    )
    pred = {
        "scores": scores,
        "labels": torch.tensor([0, 0, 0, 1, 2]),
        "video_idx": torch.tensor([0, 0, 0, 1, 2]),
        "clip_idx": torch.tensor([0, 1, 2, 0, 0]),
        "valid": torch.tensor([True, False, True, False, True]),
    }
    m = reports.protocol_metrics(pred)
    assert m["num_clips"] == 3 and m["num_failed_clips"] == 2
    assert m["num_videos"] == 3 and m["num_failed_videos"] == 1
    assert m["clip_hit1"] == pytest.approx(200.0 / 3)  # clips 0 and 4 of the 3 valid ones
    # video 0 valid mean (0.45, 0.05, 0.5): wrong; video 1: miss (no valid clip, although its
    # placeholder scores would have been "right"); video 2: right
    assert m["video_hit1"] == pytest.approx(100.0 / 3)
    assert m["video_hit5"] == pytest.approx(200.0 / 3)  # top-3 of 3 classes: 0 and 2 hit, 1 is a miss
    # without the mask every clip counts (files written before 'valid' existed)
    old = {k: v for k, v in pred.items() if k != "valid"}
    assert reports.protocol_metrics(old)["num_clips"] == 5


def test_table2_labels_the_papers_rows():
    ours = {"p3d_tiny": {"clip_hit1": 50.0, "video_hit1": 60.0, "video_hit5": 100.0, "num_classes": 4, "num_videos": 8}}
    t2 = reports.table2(ours, dataset="synthetic")
    assert len(t2) == len(TABLE2) + 1
    paper_rows = t2[t2["source"].str.startswith("paper")]
    assert list(paper_rows["method"]) == list(TABLE2)
    assert paper_rows.set_index("method").loc["P3D ResNet-199", "video_hit5"] == TABLE2["P3D ResNet-199"]["video_hit5"]
    last = t2.iloc[-1]
    assert last["source"].startswith("ours (synthetic, 4 classes, 8 videos")
    assert last["video_hit1"] == 60.0


class _FakeDataModule:
    """Two videos of three clips each, in batches of two (dict batches, as VideoDataModule)."""

    classes = ["left", "right"]

    def setup(self, stage):
        self.stage = stage

    def test_dataloader(self):
        g = torch.Generator().manual_seed(0)
        clips = torch.randn(6, 3, 16, 32, 32, generator=g)
        video = torch.tensor([0, 0, 0, 1, 1, 1])
        clip = torch.tensor([0, 1, 2, 0, 1, 2])
        label = torch.tensor([0, 0, 0, 1, 1, 1])
        return [
            {"clip": clips[i : i + 2], "label": label[i : i + 2], "video_idx": video[i : i + 2], "clip_idx": clip[i : i + 2]}
            for i in range(0, 6, 2)
        ]


def test_save_and_load_clip_predictions(tmp_path):
    from p3d_lightning.models import create_model

    torch.manual_seed(0)
    net = create_model("p3d_tiny", num_classes=2).train()
    path = reports.save_clip_predictions(net, _FakeDataModule(), tmp_path / "preds" / "p3d_tiny.pt")
    assert net.training  # mode restored
    pred = reports.load_clip_predictions(path)
    assert pred["scores"].shape == (6, 2)
    assert torch.allclose(pred["scores"].sum(1), torch.ones(6))
    assert pred["video_idx"].tolist() == [0, 0, 0, 1, 1, 1]
    assert pred["classes"] == ["left", "right"] and pred["num_classes"] == 2
    assert pred["valid"].tolist() == [True] * 6  # batches without 'valid': every clip decoded
    m = reports.protocol_metrics(pred)
    assert m["num_videos"] == 2 and m["num_clips"] == 6 and m["top_k_video"] == 2
    assert m["video_hit5"] == 100.0  # top-2 of 2 classes

    class _OneFailed(_FakeDataModule):
        def test_dataloader(self):
            batches = super().test_dataloader()
            for b in batches:
                b["valid"] = torch.ones(2, dtype=torch.bool)
            batches[1]["valid"][0] = False  # video 0, clip 2 failed to decode
            return batches

    pred = reports.load_clip_predictions(
        reports.save_clip_predictions(net, _OneFailed(), tmp_path / "preds" / "failed.pt"))
    assert pred["valid"].tolist() == [True, True, False, True, True, True]
    m = reports.protocol_metrics(pred)
    assert m["num_clips"] == 5 and m["num_failed_clips"] == 1 and m["num_failed_videos"] == 0


def test_clip_prediction_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no clip predictions"):
        reports.load_clip_predictions(tmp_path / "missing.pt")
    torch.save({"scores": torch.zeros(3, 2), "labels": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="missing keys"):
        reports.load_clip_predictions(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="stage"):
        reports.save_clip_predictions(torch.nn.Identity(), _FakeDataModule(), tmp_path / "x.pt", stage="train")
