"""Tests of :mod:`p3d_lightning.reports.representation` (notebook 04; hermetic, small, CPU)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from p3d_lightning import reports


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
