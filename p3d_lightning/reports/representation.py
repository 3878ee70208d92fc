"""Notebook 04 (``04_representation.ipynb``): the paper's transfer experiments and t-SNE.

:func:`load_features` reads what ``p3d predict`` wrote (one pool5 feature per video),
:func:`linear_probe` trains a linear SVM on them ("representation + linear SVM" rows) and
:func:`tsne_embedding` / :func:`plot_embedding` draw the 2-D embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from p3d_lightning.reports.common import PathLike, new_ax

__all__ = ["FeatureSet", "load_features", "split_features", "linear_probe", "tsne_embedding", "plot_embedding"]

@dataclass
class FeatureSet:
    """Per-video features: ``features`` (V, D), ``labels`` (V,), ``video_ids`` (V,), class names."""

    features: np.ndarray
    labels: np.ndarray
    video_ids: List[str]
    classes: List[str]
    source: str = ""

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, index: Sequence[int]) -> "FeatureSet":
        """The videos at ``index``, in that order."""
        index = np.asarray(index, dtype=int)
        return FeatureSet(
            self.features[index], self.labels[index], [self.video_ids[i] for i in index], self.classes, self.source
        )


def load_features(path: PathLike) -> FeatureSet:
    """Per-video features written by ``p3d predict`` (``.pt`` or ``.npz``, see
    :mod:`p3d_lightning.features`): the pool5 feature averaged over each video's clips.

    Raises ``FileNotFoundError`` naming the path, and ``ValueError`` when the file has no
    ``features``/``labels`` or a video has no label (-1), since a linear classifier needs them.
    """
    from p3d_lightning.features import load_features as _load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no features at {path}: write them with `p3d predict --config <experiment.yaml> "
            "--ckpt_path <checkpoint> --features.output_dir <folder>`"
        )
    data = _load(str(path))
    missing = [k for k in ("features", "labels") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing {missing}; expected a file written by p3d predict (FeatureWriter)")
    features = np.asarray(torch.as_tensor(data["features"]).float().numpy())
    labels = np.asarray(torch.as_tensor(data["labels"]).long().numpy())
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"{path}: 'features' {features.shape} and 'labels' {labels.shape} do not match (V, D) / (V,)")
    if (labels < 0).any():
        raise ValueError(f"{path}: {int((labels < 0).sum())} video(s) have no label (-1); a linear classifier needs labels")
    ids = [str(v) for v in data.get("video_ids", range(len(labels)))]
    classes = [str(c) for c in data.get("classes", [])]
    return FeatureSet(features, labels, ids, classes, str(path))


def split_features(features: FeatureSet, test_fraction: float = 0.3, seed: int = 0) -> Tuple[FeatureSet, FeatureSet]:
    """A stratified random train/test split of one feature set (every class on both sides when
    it has at least two videos)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(features.labels):
        idx = np.flatnonzero(features.labels == label)
        rng.shuffle(idx)
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return features.subset(sorted(train)), features.subset(sorted(test))


def linear_probe(
    train: FeatureSet,
    test: FeatureSet,
    classifier: str = "svm",
    C: float = 1.0,
    seed: int = 0,
) -> Dict[str, Any]:
    """Train a linear classifier on ``train`` features, report accuracy on ``test`` (percent).

    As the paper's "representation + linear SVM" rows: features are L2-normalised, then
    ``classifier="svm"`` fits scikit-learn's ``LinearSVC`` (one-vs-rest), ``"logreg"`` a
    ``LogisticRegression``. Returns ``accuracy``, ``train_accuracy``, ``num_train``,
    ``num_test``, ``num_classes`` and the fitted ``model``.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    if classifier == "svm":
        from sklearn.svm import LinearSVC

        clf = LinearSVC(C=C, random_state=seed, max_iter=10000)
    elif classifier == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    else:
        raise ValueError(f"classifier must be 'svm' or 'logreg', got {classifier!r}")
    if len(np.unique(train.labels)) < 2:
        raise ValueError(f"the training features ({train.source or 'train'}) hold fewer than 2 classes")
    model = make_pipeline(Normalizer(), clf)
    model.fit(train.features, train.labels)
    return {
        "accuracy": 100.0 * float((model.predict(test.features) == test.labels).mean()),
        "train_accuracy": 100.0 * float((model.predict(train.features) == train.labels).mean()),
        "num_train": len(train),
        "num_test": len(test),
        "num_classes": int(len(np.unique(np.concatenate([train.labels, test.labels])))),
        "model": model,
    }


def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: Optional[float] = None) -> np.ndarray:
    """A 2-D t-SNE embedding (V, 2) of L2-normalised features (the paper's feature visualisation).

    ``perplexity`` defaults to 30, reduced for small sets (t-SNE needs it below the number of
    points).
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if perplexity is None:
        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def plot_embedding(embedding: np.ndarray, labels: np.ndarray, classes: Sequence[str] = (), ax: Any = None, title: str = ""):
    """Scatter a 2-D embedding coloured by class (legend with class names when given)."""
    fig, ax = new_ax(ax, (5, 5))
    labels = np.asarray(labels)
    for label in np.unique(labels):
        pts = embedding[labels == label]
        name = classes[label] if 0 <= label < len(classes) else str(label)
        ax.scatter(pts[:, 0], pts[:, 1], s=14, label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(np.unique(labels)) <= 20:
        ax.legend(fontsize=7, markerscale=1.2, loc="best")
    return fig

