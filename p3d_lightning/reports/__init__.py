"""Helpers behind the notebooks in ``notebooks/``: the paper's tables and figures from our runs.

Each notebook is a thin page over one module here, so what it shows is tested:

=================================  ==========================================================
``01_table1_ablation.ipynb``       :mod:`~p3d_lightning.reports.table1`: the ablation's
                                   ``results.csv`` (or W&B group) beside the paper's Table 1
``02_model_zoo.ipynb``             :mod:`~p3d_lightning.reports.zoo`: sizes, depths, GMACs on
                                   the ``meta`` device; the paper's Figure 1 style plot
``03_table2_protocol.ipynb``       :mod:`~p3d_lightning.reports.protocol`: per-clip scores
                                   (``p3d-report clip-predictions``), clip/video hit@k, Table 2
``04_representation.ipynb``        :mod:`~p3d_lightning.reports.representation`: pool5
                                   features, linear SVM, t-SNE
=================================  ==========================================================

:mod:`~p3d_lightning.reports.common` holds the notebooks' parameters (:func:`env_path`,
:func:`env_mapping`). Every public name is re-exported here, so a notebook writes
``from p3d_lightning import reports; reports.table1(...)``.

Our numbers always come from files the runs wrote; the paper's come from
:mod:`p3d_lightning.paper` and are labelled ``paper: ...``. Accuracies are in percent here.
"""

from p3d_lightning.reports.common import env_mapping, env_path
from p3d_lightning.reports.protocol import (
    clip_predictions_from_checkpoint,
    load_clip_predictions,
    protocol_metrics,
    save_clip_predictions,
    table2,
)
from p3d_lightning.reports.representation import (
    FeatureSet,
    linear_probe,
    load_features,
    plot_embedding,
    split_features,
    tsne_embedding,
)
from p3d_lightning.reports.table1 import (
    load_ablation_results,
    paired_comparison,
    plot_accuracy_vs_speed,
    plot_clip_length,
    plot_table1_accuracy,
    plot_training_curves,
    seed_summary,
    speed_setting,
    table1,
)
from p3d_lightning.reports.zoo import ZOO_MODELS, count_layers, paper_accuracy, plot_depth_vs_size, zoo_table

__all__ = [
    "ZOO_MODELS",
    "load_ablation_results",
    "speed_setting",
    "table1",
    "plot_table1_accuracy",
    "plot_accuracy_vs_speed",
    "plot_training_curves",
    "seed_summary",
    "paired_comparison",
    "plot_clip_length",
    "count_layers",
    "zoo_table",
    "paper_accuracy",
    "plot_depth_vs_size",
    "save_clip_predictions",
    "clip_predictions_from_checkpoint",
    "load_clip_predictions",
    "protocol_metrics",
    "table2",
    "FeatureSet",
    "load_features",
    "split_features",
    "linear_probe",
    "tsne_embedding",
    "plot_embedding",
    "env_path",
    "env_mapping",
]
