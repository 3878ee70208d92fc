"""Table 1's Markdown and the accuracy-vs-speed figure: colours, names, per-row input, the PNGs."""

import pytest

from p3d_lightning.ablation.figures import PALETTE, model_colours, short_title
from p3d_lightning.ablation.results import RESULT_FIELDS
from p3d_lightning.ablation.table import (accuracy_vs_speed_figure, plot_accuracy_vs_speed, write_markdown_table,
                                          write_outputs)
from p3d_lightning.paper import TABLE1

from .test_curves import ablation_output


def _row(model, clip_shape, clips_per_s, acc, **kw):
    row = {k: "" for k in RESULT_FIELDS}
    frames = int(clip_shape.split("x")[1])
    row.update(model=model, arch=model, params=1000, size_mb=0.4, gmacs_per_clip=0.5, clip_shape=clip_shape,
               clip_acc1=acc, video_acc1=acc, infer_clips_per_s=clips_per_s, infer_frames_per_s=clips_per_s * frames,
               infer_device="cpu", infer_precision="bf16", infer_batch_size=8, infer_threads=2)
    row.update(kw)
    return row


ROWS = [
    # only two models, and P3D-B before P3D-A: the colours must not follow the rows' order
    _row("p3d_b", "3x16x32x32", 700.0, 0.125),
    _row("resnet50", "3x1x32x32", 990.0, 0.5),
    _row("p3d_a", "3x16x64x64", 20.0, 0.25, paper_scale_clips_per_s=5.0, paper_scale_shape="3x16x160x160",
         paper_scale_precision="bf16", paper_scale_batch_size=4),
]


def _colours(ax):
    return {c.get_gid(): tuple(c.get_facecolor()[0]) for c in ax.collections}


def test_same_model_same_colour_in_both_panels():
    from matplotlib.colors import to_rgba

    fig = accuracy_vs_speed_figure(ROWS, title="tiny")
    ours, paper = fig.axes[:2]
    assert set(_colours(ours)) == {"p3d_b", "resnet50", "p3d_a"} and set(_colours(paper)) == set(TABLE1)
    for model, colour in _colours(ours).items():
        assert colour == _colours(paper)[model] == to_rgba(model_colours([])[model])
    assert len(set(_colours(paper).values())) == len(TABLE1)  # one colour per method


def test_points_names_and_per_row_input():
    fig = accuracy_vs_speed_figure(ROWS, title="/home/someone/runs/ablation_synthetic")
    ours = fig.axes[0]
    points = {c.get_gid(): tuple(c.get_offsets()[0]) for c in ours.collections}
    assert points["resnet50"] == pytest.approx((990.0 / 16, 50.0))  # frames/s / 16
    assert points["p3d_a"] == pytest.approx((5.0, 25.0))  # paper-scale speed where measured
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "ResNet-50 (ours: input 3x1x32x32)",
        "P3D-A ResNet (ours: input 3x16x160x160)",  # its own (paper-scale) input, not the first row's
        "P3D-B ResNet (ours: input 3x16x32x32)",
        "P3D-C ResNet",  # the paper's only
        "P3D ResNet",
    ]
    title = ours.get_title()
    assert title.startswith("Ours: ablation_synthetic") and "/home" not in title
    assert "paper-scale net where measured" in ours.get_xlabel()
    assert ours.get_xscale() == "log"  # 5 to 700 clips/s


def test_no_point_outside_the_axes():
    fig = accuracy_vs_speed_figure(ROWS)
    for ax in fig.axes[:2]:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for c in ax.collections:
            x, y = c.get_offsets()[0]
            assert x0 < x < x1 and y0 < y < y1


def test_unmeasured_rows_and_other_names():
    rows = [_row("mine", "3x16x32x32", 10.0, 0.3), _row("p3d", "3x16x32x32", 0.0, 0.3, infer_clips_per_s="")]
    fig = accuracy_vs_speed_figure(rows)
    assert [c.get_gid() for c in fig.axes[0].collections] == ["mine"]  # p3d has no speed
    assert _colours(fig.axes[0])["mine"][:3] != _colours(fig.axes[1])["p3d"][:3]
    assert model_colours(["mine", "yours"])["yours"] == PALETTE[len(TABLE1) + 1]
    empty = accuracy_vs_speed_figure([])
    assert any("no model measured" in t.get_text() for t in empty.axes[0].texts)


def test_short_title():
    assert short_title("/abs/path/ablation_synthetic") == "ablation_synthetic"
    assert short_title("../runs/ablation_synthetic") == "ablation_synthetic"
    assert short_title("table1_synthetic") == "table1_synthetic" and short_title(None) == ""


def test_figure_needs_no_pyplot_and_switches_no_backend():
    import sys

    import matplotlib

    backend = matplotlib.get_backend()
    accuracy_vs_speed_figure(ROWS).savefig(__import__("io").BytesIO(), format="png")
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:  # another test loaded it: the figure is still not pyplot's
        import matplotlib.pyplot as plt

        before = plt.get_fignums()
        accuracy_vs_speed_figure(ROWS)
        assert plt.get_fignums() == before


def test_write_outputs_writes_table_scatter_and_curves(tmp_path):
    out = ablation_output(tmp_path, models=("resnet50", "p3d_a", "p3d_b"))
    write_outputs(out, ROWS, "tiny_ablation")
    assert "P3D-B ResNet" in (out / "table.md").read_text()
    for name in ("accuracy_vs_speed.png", "training_curves.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    for model in ("resnet50", "p3d_a", "p3d_b"):  # and each run's own curves, in its folder
        assert (out / "runs" / model / "training_curves.png").stat().st_size > 10_000
    assert plot_accuracy_vs_speed(ROWS, tmp_path / "x.png").stat().st_size > 10_000


def test_markdown_table_names_methods():
    text = write_markdown_table(ROWS)
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "990.0 frame/s" in lines["| ResNet-50"] and "700.0 clip/s" in lines["| P3D-B ResNet"]
    assert "| 5.0 clip/s |" in lines["| P3D-A ResNet"]  # the paper-scale column


def test_settings_line_only_what_every_drawn_speed_shares():
    ours = accuracy_vs_speed_figure(ROWS).axes[0]
    assert ours.get_title().split("\n")[1] == "cpu, bf16"  # P3D-A's paper-scale batch is 4, the others' 8
    ours = accuracy_vs_speed_figure(ROWS[:2]).axes[0]
    assert ours.get_title().split("\n")[1] == "cpu, bf16, batch 8"
