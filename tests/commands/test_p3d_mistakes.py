"""Common mistakes with the ``p3d`` command, run as a user runs it (the console script in a
subprocess, the shipped synthetic config): each exits non-zero at parse time with a short
message naming the option, before any run folder or logger exists."""

import os
import subprocess
import sys

import pytest

from paths import EXPERIMENTS

CONFIG = str(EXPERIMENTS / "synthetic" / "p3d.yaml")


def _p3d(tmp_path, *args):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "p3d_lightning.commands.p3d", "fit", "--config", CONFIG,
           "--data.root", str(tmp_path / "no_data_here"), "--run.root", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, names", [
    (["--model.arch", "p3d_x"], ["model.arch", "p3d_x", "p3d_a"]),  # a typo lists the zoo's names
    (["--trainer.max_step", "5"], ["--trainer.max_step"]),          # no silent prefix match to max_steps
    (["--data.crop_size", "1"], ["data.crop_size=1", "model.arch='p3d'"]),  # checked before any forward
    (["--trainer.precision", "64-bogus"], ["precision"]),
    (["--data.dataset", "ucf1O1"], ["data.dataset", "ucf1O1", "ucf101"]),
    (["--data.short_video_policy", "pad"], ["data.short_video_policy", "repeat_last"]),
    (["--data.normalization", "imagnet"], ["data.normalization", "imagnet"]),
    (["--data.predict_split", "val"], ["data.predict_split", "'test', 'train', 'all'"]),
    (["--model.init", "xavier"], ["model.init", "xavier", "'kaiming', 'caffe'"]),
])
def test_mistake_exits_at_parse_time_naming_the_option(tmp_path, args, names):
    proc = _p3d(tmp_path, *args)
    assert proc.returncode != 0, proc.stdout[-2000:]
    err = proc.stderr
    for name in names:
        assert name in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    # refused before anything was written: no run folder, no synthetic set generated
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "no_data_here").exists()


@pytest.mark.parametrize("override", [["--set", "model.arch=p3d_x"], ["--model.arch", "p3d_x"]],
                         ids=["set", "dotted"])
def test_ablation_config_mistake_is_one_line_under_its_own_name(tmp_path, override):
    """A bad override reaches p3d-ablation as one line naming the run config and the option,
    not as the p3d parser's usage printed under the name p3d-ablation."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "p3d_lightning.commands.ablation", "--wandb", "disabled",
                           "--output", str(tmp_path / "abl"), "--models", "p3d_a", *override],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("p3d-ablation: error: p3d_a (") and "model.arch" in lines[-1] and "p3d_x" in lines[-1]
    assert "usage:" not in proc.stderr and "Traceback" not in proc.stderr
