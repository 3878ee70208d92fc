"""The ablation's progress lines: model k of N, elapsed, ETA from the measured rate."""

import re

import torch

from p3d_lightning.ablation.progress import AblationProgress, checkpoint_step, format_duration

LINE = re.compile(r"^\[ablation\] model (\d+)/(\d+) (\S+): (start|done in \d+:\d\d:\d\d)[^;]*; "
                  r"elapsed \d+:\d\d:\d\d; ETA (unknown|\d+:\d\d:\d\d)")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lines_and_eta_from_measured_rate():
    clock = Clock()
    names = ["resnet50", "p3d_a", "p3d_b", "p3d"]
    # resnet50 already in results.csv; p3d_b resumes from step 40 of 100
    progress = AblationProgress(names, {"p3d_a": 100, "p3d_b": 60, "p3d": 100}, start_steps={"p3d_b": 40},
                                clock=clock)
    line = progress.start("p3d_a")
    assert LINE.match(line).groups() == ("2", "4", "p3d_a", "start", "unknown")
    assert "steps 0 -> 100" in line and "elapsed 0:00:00" in line

    clock.now += 200  # 100 steps in 200 s: 2 s/step
    line = progress.finish("p3d_a", 100)
    assert LINE.match(line).group(4) == "done in 0:03:20"
    assert "(100 steps, 2 s/step)" in line
    assert "ETA 0:05:20 (2 models, 160 steps at 2 s/step)" in line  # (60 + 100) x 2 s

    line = progress.start("p3d_b")
    assert line.startswith("[ablation] model 3/4 p3d_b: start, steps 40 -> 100; elapsed 0:03:20")
    clock.now += 60  # 60 steps in 60 s: the rate is now 260 s / 160 steps
    progress.finish("p3d_b", 60)
    line = progress.start("p3d")
    assert "ETA 0:02:42 (1 model, 100 steps at 1.62 s/step)" in line
    clock.now += 150
    line = progress.finish("p3d", 100)
    assert LINE.match(line).groups()[:3] == ("4", "4", "p3d") and line.endswith("ETA 0:00:00 (all models done)")
    assert "elapsed 0:06:50" in line


def test_eta_unknown_without_max_steps():
    clock = Clock()
    progress = AblationProgress(["a", "b"], {"a": 10, "b": None}, clock=clock)
    progress.start("a")
    clock.now += 5
    assert "ETA unknown (a remaining run has no max_steps)" in progress.finish("a", 10)


def test_format_duration():
    assert format_duration(0) == "0:00:00" and format_duration(59.6) == "0:01:00"
    assert format_duration(3 * 3600 + 62) == "3:01:02" and format_duration(-1) == "0:00:00"


def test_checkpoint_step(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 42, "state_dict": {"w": torch.zeros(3)}}, path)
    assert checkpoint_step(path) == 42
    assert checkpoint_step(tmp_path / "none.ckpt") == 0
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    assert checkpoint_step(tmp_path / "bad.ckpt") == 0


def test_elapsed_counts_from_the_ablations_start():
    clock = Clock()
    progress = AblationProgress(["a"], {"a": 10}, started=clock.now - 75, clock=clock)
    assert "elapsed 0:01:15" in progress.start("a")
