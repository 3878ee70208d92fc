"""Training curves from CSV logs: both run-folder layouts, resumes, one line per model, the PNG."""

import csv
import os

import pytest

from p3d_lightning.ablation.curves import (ablation_runs, read_curves, training_curves_figure, training_logs,
                                           write_training_curves)
from p3d_lightning.ablation.figures import model_colours

FIELDS = ["epoch", "step", "train/loss_step", "train/lr", "val/loss", "val/video_acc1", "test/video_acc1"]


def write_metrics(path, steps, loss=2.0, acc=0.25, val_every=5):
    """A metrics.csv as Lightning's CSVLogger writes it: one row per logging call, empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for step in steps:
            writer.writerow({"epoch": 0, "step": step, "train/loss_step": loss / (1 + step), "train/lr": 0.1})
            if step % val_every == val_every - 1:
                writer.writerow({"epoch": 0, "step": step, "val/loss": loss, "val/video_acc1": acc})
        writer.writerow({"step": steps[-1] + 1, "test/video_acc1": acc})
    return path


def ablation_output(tmp_path, models=("resnet50", "p3d_a", "p3d")):
    """``<output>/runs/<model>/<model>/version_0/metrics.csv`` for each model, as the runner lays them out."""
    for i, model in enumerate(models):
        write_metrics(tmp_path / "runs" / model / model / "version_0" / "metrics.csv", list(range(10)), acc=0.1 * i)
    return tmp_path


def test_p3d_run_folder_reads_fit_logs_only_and_resumes_in_order(tmp_path):
    run = tmp_path / "runs" / "synthetic_p3d" / "version_0"
    first = write_metrics(run / "logs" / "fit" / "metrics.csv", list(range(0, 8)), loss=4.0)
    resumed = write_metrics(run / "logs" / "fit-1" / "metrics.csv", list(range(5, 12)), loss=1.0)
    write_metrics(run / "logs" / "test" / "metrics.csv", [0], loss=99.0)
    os.utime(first, (1, 1))  # written before the resume
    assert training_logs(run) == [first, resumed]
    curves = read_curves(run)
    loss = dict(curves["train/loss_step"])
    assert sorted(loss) == list(range(12))
    assert loss[2] == pytest.approx(4.0 / 3) and loss[6] == pytest.approx(1.0 / 7)  # the resume's value wins
    assert curves["val/video_acc1"][0] == (4, 0.25)
    assert 99.0 not in [v for _, v in curves.get("val/loss", [])]  # the test command's log is left out
    assert training_logs(tmp_path / "nowhere") == [] and read_curves(tmp_path / "nowhere") == {}


def test_ablation_runs_in_table1_order(tmp_path):
    out = ablation_output(tmp_path, models=("p3d", "zz_custom", "resnet50"))
    (tmp_path / "runs" / "empty").mkdir()  # no log yet: not a run to draw
    assert list(ablation_runs(out)) == ["resnet50", "p3d", "zz_custom"]
    assert ablation_runs(tmp_path / "none") == {}


def test_figure_has_one_line_per_model_in_the_scatter_colours(tmp_path):
    runs = ablation_runs(ablation_output(tmp_path))
    fig = training_curves_figure(runs, title=str(tmp_path / "ablation_x"))
    ax_loss, ax_acc, ax_lr = fig.axes[:3]
    colours = model_colours(runs)
    for ax, per_model in ((ax_acc, 1), (ax_loss, 2)):  # loss: train and val
        lines = [line for line in ax.get_lines() if line.get_gid()]
        assert len(lines) == per_model * len(runs)
        assert {line.get_gid(): line.get_color() for line in lines} == {m: colours[m] for m in runs}
    # every model on the same lr schedule: drawn once, said so
    assert [line.get_gid() for line in ax_lr.get_lines()] == ["all"]
    assert ax_lr.get_legend().get_texts()[0].get_text() == "every model (one schedule)"
    acc = {line.get_gid(): list(line.get_ydata()) for line in ax_acc.get_lines()}
    assert acc["p3d_a"] == pytest.approx([10.0, 10.0])  # percent
    assert fig._suptitle.get_text() == "Training curves: ablation_x"  # no absolute path
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["ResNet-50", "P3D-A ResNet", "P3D ResNet"]


def test_different_schedules_one_lr_line_per_model(tmp_path):
    ablation_output(tmp_path, models=("p3d_a", "p3d"))
    path = tmp_path / "runs" / "p3d" / "p3d" / "version_0" / "metrics.csv"
    path.write_text(path.read_text().replace(",0.1,", ",0.01,"))
    fig = training_curves_figure(ablation_runs(tmp_path))
    assert [line.get_gid() for line in fig.axes[2].get_lines()] == ["p3d_a", "p3d"]


def test_single_run_and_png(tmp_path):
    run = tmp_path / "runs" / "synthetic_p3d" / "version_3"
    write_metrics(run / "logs" / "fit" / "metrics.csv", list(range(20)))
    png = write_training_curves(run, tmp_path / "curves.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    fig = training_curves_figure(run)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["synthetic_p3d/version_3"]


def test_empty_panels_say_so(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss_epoch\n0,1,2.5\n")  # a run shorter than log_every_n_steps
    fig = training_curves_figure({"p3d": path})
    ax_loss, ax_acc, _ = fig.axes[:3]
    assert len([line for line in ax_loss.get_lines() if line.get_gid()]) == 1  # the epoch mean stands in
    assert any(t.get_text() == "not logged yet" for t in ax_acc.texts)
