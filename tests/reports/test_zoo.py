"""Tests of :mod:`p3d_lightning.reports.zoo` (notebook 02; networks on the meta device)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from p3d_lightning import reports
from p3d_lightning.paper import C3D_SIZE_MB, PAPER_PARAM_COUNTS, TABLE1, TABLE2


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
