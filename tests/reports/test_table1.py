"""Tests of the notebook helpers in ``p3d_lightning.reports`` (hermetic, small, CPU)."""

from __future__ import annotations

import csv
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from p3d_lightning import reports
from p3d_lightning.ablation import RESULT_FIELDS
from p3d_lightning.paper import C3D_SIZE_MB, PAPER_PARAM_COUNTS, TABLE1, TABLE2


def _row(model, clip_shape, **kw):
    row = {k: "" for k in RESULT_FIELDS}
    row.update(
        model=model,
        arch=model,
        params=1000,
        size_mb=0.004,
        gmacs_per_clip=0.5,
        clip_shape=clip_shape,
        clip_acc1=0.5,
        clip_acc5=1.0,
        video_acc1=0.75,
        video_acc5=1.0,
        infer_clips_per_s=10.0,
        infer_frames_per_s=10.0 * int(clip_shape.split("x")[1]),
        infer_device="cpu",
        infer_precision="fp32",
        infer_batch_size=4,
        infer_threads=2,
    )
    row.update(kw)
    return row


def _write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


@pytest.fixture
def results_dir(tmp_path):
    # written out of Table 1's order on purpose
    _write_csv(
        tmp_path / "results.csv",
        [_row("p3d", "3x16x32x32", video_acc1=0.9), _row("resnet50", "3x1x32x32", video_acc1=0.5)],
    )
    return tmp_path


# ------------------------------------------------------------------ Table 1
def test_load_ablation_results_folder_and_file(results_dir):
    frame = reports.load_ablation_results(results_dir)
    assert list(frame["model"]) == ["resnet50", "p3d"]  # Table 1 order
    assert set(RESULT_FIELDS) <= set(frame.columns)
    same = reports.load_ablation_results(results_dir / "results.csv")
    assert list(same["model"]) == list(frame["model"])


def test_load_ablation_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv"):
        reports.load_ablation_results(tmp_path)
    _write_csv(tmp_path / "results.csv", [])
    with pytest.raises(ValueError, match="no finished model"):
        reports.load_ablation_results(tmp_path)
    with pytest.raises(ValueError, match="ENTITY/PROJECT/GROUP"):
        reports.load_ablation_results("wandb:only/two")


def test_load_ablation_results_from_wandb_group():
    class Run:
        def __init__(self, summary):
            self.summary = summary

    class FakeApi:
        def runs(self, path, filters):
            self.called = (path, filters)
            return [
                Run({"ablation/model": "p3d_a", "ablation/video_acc1": 0.8, "ablation/clip_shape": "3x16x32x32"}),
                Run({"other": 1}),  # the group's table run: no ablation/* keys
            ]

    api = FakeApi()
    frame = reports.load_ablation_results("wandb:me/p3d-lightning/table1_synthetic", api=api)
    assert api.called == ("me/p3d-lightning", {"group": "table1_synthetic"})
    assert list(frame["model"]) == ["p3d_a"]
    assert float(frame.loc[0, "video_acc1"]) == 0.8


def test_table1_puts_ours_beside_the_paper(results_dir):
    t1 = reports.table1(reports.load_ablation_results(results_dir))
    r50, p3d = t1.iloc[0], t1.iloc[1]
    assert r50["method"] == TABLE1["resnet50"].method
    assert r50["speed unit"] == "frame/s" and r50["speed"] == pytest.approx(10.0)  # 1-frame clips
    assert p3d["speed unit"] == "clip/s" and p3d["speed"] == pytest.approx(10.0)
    assert p3d["video top-1 (%)"] == pytest.approx(90.0)
    assert p3d["paper: top-1 (%)"] == TABLE1["p3d"].top1
    assert p3d["paper: size (MB)"] == TABLE1["p3d"].size_mb
    assert r50["paper: speed unit"] == "frame/s"
    assert p3d["speed settings"] == "cpu, fp32, batch 4, threads: 2, input 3x16x32x32"
    assert p3d["paper-scale settings"] == "" and math.isnan(p3d["paper-scale speed"])  # not measured in this run
    assert "paper" in t1.attrs["paper_note"]


def test_speed_setting_leaves_out_unrecorded_fields():
    row = _row("p3d", "3x16x32x32", infer_threads="", paper_scale_clips_per_s=3.0, paper_scale_shape="3x16x160x160",
               paper_scale_precision="bf16", paper_scale_batch_size=8)
    assert reports.speed_setting(row) == "cpu, fp32, batch 4, input 3x16x32x32"
    assert reports.speed_setting(row, "paper_scale") == "cpu, bf16, batch 8, input 3x16x160x160"


def test_table1_plots(results_dir):
    t1 = reports.table1(reports.load_ablation_results(results_dir))
    fig = reports.plot_table1_accuracy(t1)
    assert len(fig.axes) == 1
    fig = reports.plot_accuracy_vs_speed(t1)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].collections) == 2  # our two points
    assert len(fig.axes[1].collections) == len(TABLE1)  # the paper's five


# ------------------------------------------------------------------ zoo
@pytest.mark.parametrize("name,depth", [("resnet50", 50), ("p3d", 63), ("p3d_b", 63), ("p3d199", 199)])
def test_count_layers_matches_the_papers_depths(name, depth):
    from p3d_lightning.models import create_model

    with torch.device("meta"):
        net = create_model(name, num_classes=101)
    assert reports.count_layers(net) == depth


def test_zoo_table_is_cheap_and_matches_the_paper():
    zoo = reports.zoo_table(["resnet50", "p3d", "p3d199"], num_classes=101)
    assert list(zoo["model"]) == ["resnet50", "p3d", "p3d199", "c3d (published)"]
    rows = zoo.set_index("model")
    for name in ("resnet50", "p3d", "p3d199"):
        assert rows.loc[name, "params"] == PAPER_PARAM_COUNTS[(name, 101)]
        assert bool(rows.loc[name, "params match paper"])
        assert rows.loc[name, "size (MB)"] == pytest.approx(rows.loc[name, "params"] * 4 / 2**20)
    assert rows.loc["p3d", "GMACs/clip"] == pytest.approx(8.44, abs=0.01)
    assert rows.loc["p3d", "paper: size (MB)"] == 98.0 and rows.loc["resnet50", "paper: size (MB)"] == 92.0
    assert rows.loc["p3d199", "paper: depth"] == 199
    assert rows.loc["c3d (published)", "paper: size (MB)"] == C3D_SIZE_MB
    fig = reports.plot_depth_vs_size(zoo)
    assert fig.axes[0].get_xlabel().startswith("depth")


def test_paper_accuracy_sources():
    acc = reports.paper_accuracy()
    assert acc["p3d"][0] == TABLE1["p3d"].top1 and "Table 1" in acc["p3d"][1]
    assert acc["p3d199"][0] == TABLE2["P3D ResNet-199"]["video_hit1"] and "Table 2" in acc["p3d199"][1]


# ------------------------------------------------------------------ Table 2 protocol
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


# ------------------------------------------------------------------ representation
def _blobs(num_classes=3, per_class=10, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 5
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = centres[labels] + rng.normal(size=(len(labels), dim)) * 0.1
    return feats.astype(np.float32), labels


def _write_feature_file(path, feats, labels):
    torch.save(
        {
            "video_ids": [f"v{i}" for i in range(len(labels))],
            "video_idx": torch.arange(len(labels)),
            "labels": torch.as_tensor(labels),
            "features": torch.as_tensor(feats),
            "scores": torch.zeros(len(labels), 3),
            "num_clips": torch.full((len(labels),), 4),
            "classes": ["a", "b", "c"],
        },
        path,
    )


def test_load_features_and_probe(tmp_path):
    feats, labels = _blobs()
    _write_feature_file(tmp_path / "features.pt", feats, labels)
    fs = reports.load_features(tmp_path / "features.pt")
    assert fs.features.shape == (30, 16) and len(fs) == 30 and fs.classes == ["a", "b", "c"]
    train, test = reports.split_features(fs, test_fraction=0.3, seed=0)
    assert len(train) + len(test) == 30 and not set(train.video_ids) & set(test.video_ids)
    assert sorted(set(test.labels)) == [0, 1, 2] and sorted(set(train.labels)) == [0, 1, 2]
    for classifier in ("svm", "logreg"):
        result = reports.linear_probe(train, test, classifier=classifier)
        assert result["accuracy"] == 100.0 and result["num_test"] == len(test)
    with pytest.raises(ValueError, match="classifier"):
        reports.linear_probe(train, test, classifier="knn")


def test_load_features_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="p3d predict"):
        reports.load_features(tmp_path / "missing.pt")
    feats, labels = _blobs()
    labels = labels.copy()
    labels[0] = -1
    _write_feature_file(tmp_path / "unlabelled.pt", feats, labels)
    with pytest.raises(ValueError, match="no label"):
        reports.load_features(tmp_path / "unlabelled.pt")


def test_tsne_embedding_and_plot():
    feats, labels = _blobs(per_class=5)
    emb = reports.tsne_embedding(feats, seed=0)
    assert emb.shape == (15, 2) and np.isfinite(emb).all()
    fig = reports.plot_embedding(emb, labels, ["a", "b", "c"], title="blobs")
    assert len(fig.axes[0].collections) == 3
    with pytest.raises(ValueError, match="at least 3"):
        reports.tsne_embedding(feats[:2])


# ------------------------------------------------------------------ parameters
def test_env_parameters(monkeypatch):
    monkeypatch.delenv("P3D_TEST_MAP", raising=False)
    assert reports.env_mapping("P3D_TEST_MAP", {"a": "1"}) == {"a": "1"}
    monkeypatch.setenv("P3D_TEST_MAP", "resnet50=/x/r.pt, p3d=/x/p.pt")
    assert reports.env_mapping("P3D_TEST_MAP", {}) == {"resnet50": "/x/r.pt", "p3d": "/x/p.pt"}
    monkeypatch.setenv("P3D_TEST_MAP", "nonsense")
    with pytest.raises(ValueError, match="P3D_TEST_MAP"):
        reports.env_mapping("P3D_TEST_MAP", {})
    monkeypatch.setenv("P3D_TEST_PATH", "/tmp/x")
    assert str(reports.env_path("P3D_TEST_PATH", "d")) == "/tmp/x"
