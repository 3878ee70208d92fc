"""Tests of :mod:`p3d_lightning.reports.table1` (notebook 01; hermetic, small, CPU)."""

from __future__ import annotations

import csv
import math

import matplotlib

matplotlib.use("Agg")

import pytest

from p3d_lightning import reports
from p3d_lightning.ablation import RESULT_FIELDS
from p3d_lightning.paper import TABLE1


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


def test_accuracy_vs_speed_is_the_runners_figure_drawn_live(results_dir):
    import matplotlib.pyplot as plt

    from p3d_lightning.ablation.table import accuracy_vs_speed_figure

    results = reports.load_ablation_results(results_dir)
    t1 = reports.table1(results)
    before = set(plt.get_fignums())
    fig = reports.plot_accuracy_vs_speed(t1.drop(columns=["speed settings"]), title=str(results_dir))
    assert set(plt.get_fignums()) - before == {fig.number}  # a pyplot figure: a notebook shows it inline
    runner = accuracy_vs_speed_figure(t1.attrs["rows"], title=str(results_dir))
    for ours, theirs in zip(fig.axes, runner.axes):  # the same drawing as the runner's PNG
        assert [(c.get_gid(), tuple(c.get_facecolor()[0])) for c in ours.collections] == \
            [(c.get_gid(), tuple(c.get_facecolor()[0])) for c in theirs.collections]
        assert ours.get_title() == theirs.get_title() and str(results_dir) not in ours.get_title()
    assert [c.get_gid() for c in reports.plot_accuracy_vs_speed(results).axes[0].collections] == ["resnet50", "p3d"]
    with pytest.raises(ValueError, match="table1"):
        reports.plot_accuracy_vs_speed([{"method": "x"}])
    plt.close("all")


def test_plot_training_curves_from_the_ablation_folder(results_dir):
    import matplotlib.pyplot as plt

    from tests.ablation.test_curves import ablation_output

    with pytest.raises(FileNotFoundError, match="no training logs"):
        reports.plot_training_curves(results_dir)
    ablation_output(results_dir, models=("resnet50", "p3d"))
    fig = reports.plot_training_curves(results_dir / "results.csv", title="tiny")
    assert fig.number in plt.get_fignums()
    acc = fig.axes[1]
    assert [line.get_gid() for line in acc.get_lines()] == ["resnet50", "p3d"]
    scatter = reports.plot_accuracy_vs_speed(reports.table1(reports.load_ablation_results(results_dir)))
    colours = {c.get_gid(): tuple(c.get_facecolor()[0][:3]) for c in scatter.axes[0].collections}
    from matplotlib.colors import to_rgb

    assert {line.get_gid(): to_rgb(line.get_color()) for line in acc.get_lines()} == colours
    plt.close("all")
