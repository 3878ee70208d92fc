"""The clip-length axis: which rows form a series, the figure, the names, the paper-scale input."""

import pytest

from p3d_lightning.ablation.clip_length import clip_length_figure, clip_length_series, write_clip_length_figure
from p3d_lightning.ablation.figures import method_name


def _row(model, arch, frames, acc, seed=0, speed=100.0):
    return {"model": model, "arch": arch, "seed": seed, "clip_shape": f"3x{frames}x80x80", "video_acc1": acc,
            "infer_clips_per_s": speed / frames, "paper_scale_clips_per_s": 2.0 / frames}


def test_series_are_archs_at_two_or_more_lengths_sorted_by_frames():
    rows = [_row("p3d_t32", "p3d", 32, 0.99), _row("p3d_t8", "p3d", 8, 0.90), _row("p3d", "p3d", 16, 0.97),
            _row("p3d_a", "p3d_a", 16, 0.98),  # one length only: no series
            {"model": "resnet50", "arch": "resnet50", "clip_shape": "3x1x80x80", "video_acc1": 0.44}]
    series = clip_length_series(rows)
    assert list(series) == ["p3d"]
    assert [p["frames"] for p in series["p3d"]] == [8, 16, 32]
    assert write_clip_length_figure(rows[3:], "unused.png") is None  # nothing to draw, nothing written


def test_figure_draws_means_with_intervals_over_seeds(tmp_path):
    rows = [_row("p3d_t8", "p3d", 8, acc, seed) for seed, acc in enumerate((0.80, 0.90))]
    rows += [_row("p3d_t16", "p3d", 16, acc, seed) for seed, acc in enumerate((0.95, 0.97))]
    fig = clip_length_figure(rows, title="/abs/path/clip_length")
    ax_acc, ax_speed = fig.axes[:2]
    line = ax_acc.lines[0]
    assert list(line.get_xdata()) == [8, 16]
    assert list(line.get_ydata()) == pytest.approx([85.0, 96.0])  # the means over the two seeds
    assert ax_acc.collections, "no error bars for the 95% intervals"
    assert ax_acc.get_title() == "Accuracy: clip_length"
    assert [list(l.get_xdata()) for l in ax_speed.lines] == [[8, 16], [8, 16]]  # trained net and full-size net
    assert ax_speed.get_yscale() == "log"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["P3D ResNet (mean of 2 seeds, 95% interval)"]
    low, high = ax_acc.get_ylim()
    assert high - low >= 10  # a one-video step is not drawn as a cliff
    path = write_clip_length_figure(rows, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_clip_length_rows_are_named_by_method_and_frames():
    assert method_name("p3d_t8") == "P3D ResNet, 8 frames"
    assert method_name("p3d_a_t32") == "P3D-A ResNet, 32 frames"
    assert method_name("p3d_a") == "P3D-A ResNet" and method_name("my_t8") == "my_t8"


def test_paper_scale_speed_at_the_rows_own_frames(monkeypatch):
    """The clip-length ablation times the full-size network at each row's number of frames."""
    from p3d_lightning.speed import inference
    from p3d_lightning.speed.config import SpeedConfig

    seen = {}

    def fake_measure(net, clip_shape, batch_size, **kwargs):
        seen.update(shape=clip_shape, batch=batch_size)
        return "measured"

    monkeypatch.setattr(inference, "measure_inference_speed", fake_measure)
    monkeypatch.setattr(inference, "inference_model", lambda net, setting: net)
    config = SpeedConfig(paper_scale=True, fast_path=False)
    assert inference.paper_scale_speed("p3d_tiny", 3, config, clip_len=8) == "measured"
    assert seen["shape"][1] == 8
    inference.paper_scale_speed("p3d_tiny", 3, config)
    assert seen["shape"][1] == 16  # the architecture's own clip without clip_len
