"""The ablation runner on a tiny synthetic set: outputs, resume without retraining, bad input."""

import csv
from pathlib import Path

import pytest
import yaml

from p3d_lightning.ablation import AblationError, load_ablation_config, read_results, run_ablation


def _experiment(root, arch, clip_len, num_eval_clips):
    return {
        "seed_everything": 0,
        "model": {"arch": arch, "width_mult": 0.0625, "dropout": 0.0, "lr": 0.05,
                  "lr_schedule": "constant", "partial_bn": False},
        "data": {"dataset": "ucf101", "root": str(root), "num_classes": 4, "clip_len": clip_len,
                 "resize": [36, 48], "crop_size": 32, "horizontal_flip": False,
                 "num_eval_clips": num_eval_clips, "batch_size": 4, "num_workers": 0, "progress": False},
        "trainer": {"max_steps": 3, "accelerator": "cpu", "devices": 1, "precision": "32-true",
                    "limit_val_batches": 1, "num_sanity_val_steps": 0, "enable_model_summary": False},
    }


def _write_config(tmp_path, root, runs=("resnet50", "p3d")):
    specs = {"resnet50": ("resnet50", 1, 2), "p3d": ("p3d", 16, 1)}
    out = {}
    for name in runs:
        arch, clip_len, n_eval = specs[name]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_experiment(root, arch, clip_len, n_eval)))
        out[name] = path.name
    cfg = {"name": "tiny_ablation", "output_dir": str(tmp_path / "out"), "runs": out,
           "speed": {"batch_size": 1, "warmup": 0, "repeats": 1, "paper_scale": False}}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_runner_writes_table_and_resumes_without_retraining(tmp_path, tiny_synthetic_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = load_ablation_config(_write_config(tmp_path, tiny_synthetic_root))
    out = tmp_path / "out"

    # "Killed" after the first model: only its row exists.
    rows = run_ablation(cfg, wandb_mode="offline", stop_after=1, progress=False)
    assert [r["model"] for r in rows] == ["resnet50"]
    first = dict(rows[0])
    ckpt_mtime = (out / "runs" / "resnet50" / "checkpoints" / "last.ckpt").stat().st_mtime

    rows = run_ablation(cfg, wandb_mode="offline", progress=False)
    assert [r["model"] for r in rows] == ["resnet50", "p3d"]
    assert rows[0] == first, "the finished model was retrained or its row rewritten"
    assert (out / "runs" / "resnet50" / "checkpoints" / "last.ckpt").stat().st_mtime == ckpt_mtime

    for row in rows:
        assert 0.0 <= float(row["video_acc1"]) <= 1.0
        assert int(row["params"]) > 0 and float(row["infer_clips_per_s"]) > 0
        assert row["infer_device"] and row["infer_precision"]
        assert int(row["train_steps"]) == 3
        # the fast path the speed column times was compared with fp32 on the test clips; a
        # 3-step net has near-tied logits, so only the range and the tolerance are checked
        assert 0.0 <= float(row["fast_path_top1_agreement"]) <= 1.0
        assert 0.0 <= float(row["fast_path_max_rel_logit_diff"]) < 0.1
    assert rows[0]["clip_shape"] == "3x1x32x32" and rows[1]["clip_shape"] == "3x16x32x32"

    table = (out / "table.md").read_text()
    assert "Paper: top-1" in table and "84.2%" in table and "P3D ResNet" in table
    png = (out / "accuracy_vs_speed.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # W&B offline runs (one per model plus the table run) in the output folder.
    offline = list(out.rglob("offline-run-*"))
    assert len(offline) >= 3, offline
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2


def test_resume_unfinished_model_from_last_checkpoint(tmp_path, tiny_synthetic_root):
    cfg = load_ablation_config(_write_config(tmp_path, tiny_synthetic_root, runs=("p3d",)))
    out = tmp_path / "out"
    # First attempt stopped after 2 of 3 steps: a last.ckpt exists, no row.
    cfg_short = load_ablation_config(_write_config(tmp_path, tiny_synthetic_root, runs=("p3d",)))
    raw = yaml.safe_load((tmp_path / "p3d.yaml").read_text())
    raw["trainer"]["max_steps"] = 2
    (tmp_path / "p3d.yaml").write_text(yaml.safe_dump(raw))
    run_ablation(cfg_short, wandb_mode="disabled", progress=False)
    (out / "results.csv").unlink()
    raw["trainer"]["max_steps"] = 3
    (tmp_path / "p3d.yaml").write_text(yaml.safe_dump(raw))
    rows = run_ablation(cfg, wandb_mode="disabled", progress=False)
    assert int(rows[0]["train_steps"]) == 3


def test_bad_input_fails_before_training(tmp_path, tiny_synthetic_root):
    cfg = load_ablation_config(_write_config(tmp_path, tiny_synthetic_root))
    with pytest.raises(AblationError, match="unknown model.*'p3d_z'"):
        run_ablation(cfg, models=["p3d_z"], wandb_mode="disabled")

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(AblationError, match="not writable"):
        run_ablation(cfg, output_dir=blocker / "sub", wandb_mode="disabled")

    empty = tmp_path / "empty_ucf"
    empty.mkdir()
    (empty / "classInd.txt").write_text("".join(f"{i + 1} C{i}\n" for i in range(4)))
    (empty / "trainlist01.txt").write_text("")
    (empty / "testlist01.txt").write_text("")
    (tmp_path / "e").mkdir()
    cfg_empty = load_ablation_config(_write_config(tmp_path / "e", empty))
    with pytest.raises(AblationError, match="empty|no readable"):
        run_ablation(cfg_empty, wandb_mode="disabled")
    assert not (tmp_path / "e" / "out" / "results.csv").exists()


def test_config_errors_name_the_file(tmp_path):
    with pytest.raises(AblationError, match="not found"):
        load_ablation_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruns: {}\n")
    with pytest.raises(AblationError, match="bad.yaml"):
        load_ablation_config(bad)


def test_every_ablation_config_in_experiments_parses():
    exp = Path(__file__).resolve().parents[1] / "experiments"
    paths = sorted(exp.glob("ablation_*.yaml"))
    assert paths, "no ablation configs in experiments/"
    for path in paths:
        cfg = load_ablation_config(path)
        assert list(cfg.runs) == ["resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d"], path
        for run in cfg.runs.values():
            assert run.is_file(), f"{path}: {run} missing"


# ----------------------------------------------------------------------------- the user's path
def _shipped_ablation(tmp_path, models=("resnet50", "p3d_a")):
    """An ablation file over the SHIPPED synthetic run configs, speed columns kept cheap."""
    exp = Path(__file__).resolve().parents[1] / "experiments" / "synthetic"
    cfg = {"name": "tiny_shipped", "runs": {m: str(exp / f"{m}.yaml") for m in models},
           "speed": {"batch_size": 1, "warmup": 0, "repeats": 1, "paper_scale": False, "fast_path": False}}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _tiny_sets(root, steps=6):
    return ["model.width_mult=0.0625", f"data.root={root}", "data.num_classes=4", "data.resize=[40,52]",
            "data.crop_size=32", "data.num_eval_clips=2", "data.batch_size=2", "data.eval_batch_size=8",
            "data.num_workers=0", "data.progress=false", "trainer.precision=32-true",
            f"trainer.max_steps={steps}", "trainer.check_val_every_n_epoch=1", "last_checkpoint.every_n_train_steps=2"]


def _ablation_cli(args, tmp_path, wandb="disabled"):
    import os
    import subprocess

    env = dict(os.environ, WANDB_MODE=wandb, WANDB_SILENT="true", WANDB_DIR=str(tmp_path / "wandb_home"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(["p3d-ablation", "--no-progress", *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=900)


def test_ablation_killed_during_its_second_model_resumes_exactly(tmp_path, tiny_synthetic_root):
    import json
    import signal

    import torch

    cfg = _shipped_ablation(tmp_path)
    sets = _tiny_sets(tiny_synthetic_root)
    ref = _ablation_cli(["--config", str(cfg), "--output", str(tmp_path / "ref"), "--set", *sets], tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    killer = {"class_path": "resume_killer.KillAt",
              "init_args": {"hook": "train_batch_start", "step": 5, "arch": "p3d_a", "marker": str(tmp_path / "killed")}}
    args = ["--config", str(cfg), "--output", str(tmp_path / "out"), "--set", *sets,
            "trainer.callbacks=" + json.dumps([killer])]
    p = _ablation_cli(args, tmp_path)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert [r["model"] for r in read_results(tmp_path / "out" / "results.csv")] == ["resnet50"]
    p = _ablation_cli(args, tmp_path)  # the same command again
    assert p.returncode == 0, p.stderr[-3000:]
    rows, ref_rows = read_results(tmp_path / "out" / "results.csv"), read_results(tmp_path / "ref" / "results.csv")
    assert [r["model"] for r in rows] == ["resnet50", "p3d_a"]
    for row, want in zip(rows, ref_rows):
        for key in ("clip_acc1", "clip_acc5", "video_acc1", "video_acc5", "train_steps"):
            assert row[key] == want[key], (row["model"], key)
        a = torch.load(row["checkpoint"], weights_only=True)
        b = torch.load(want["checkpoint"], weights_only=True)
        assert a["global_step"] == int(row["train_steps"])  # the row names the tested network
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), (row["model"], k)


def test_two_process_gloo_ablation_writes_once_and_matches_one_process(tmp_path, tiny_synthetic_root):
    cfg = _shipped_ablation(tmp_path, models=("resnet50", "p3d_a"))
    # no training steps: both runs test the same seeded network, so accuracy must match exactly
    sets = _tiny_sets(tiny_synthetic_root, steps=0)
    one = _ablation_cli(["--config", str(cfg), "--output", str(tmp_path / "one"), "--set", *sets], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _ablation_cli(["--config", str(cfg), "--output", str(tmp_path / "two"), "--wandb", "offline", "--set", *sets,
                         "trainer.devices=2", "trainer.strategy=ddp"], tmp_path, wandb="offline")
    assert two.returncode == 0, two.stderr[-3000:]
    rows_one, rows_two = read_results(tmp_path / "one" / "results.csv"), read_results(tmp_path / "two" / "results.csv")
    assert [r["model"] for r in rows_two] == ["resnet50", "p3d_a"]  # one row per model
    for a, b in zip(rows_one, rows_two):
        assert a["video_acc1"] == b["video_acc1"] and a["clip_acc1"] == b["clip_acc1"], a["model"]
    assert len(list((tmp_path / "two" / "wandb").glob("offline-run-*"))) == 1  # one table run


def test_ablation_quick_flag_shrinks_every_run_and_writes_beside_the_output(tmp_path, tiny_synthetic_root):
    """`p3d-ablation --quick` on the shipped ablation config: the quick overrides reach every run,
    and no paper-scale speed is measured (without --output, results go to <output_dir>_quick)."""
    from p3d_lightning.ablation import QUICK_OVERRIDES

    cfg = _shipped_ablation(tmp_path, models=("p3d_a",))
    sets = [s for s in _tiny_sets(tiny_synthetic_root) if not s.startswith(("trainer.max_steps", "model.width_mult"))]
    p = _ablation_cli(["--config", str(cfg), "--quick", "--output", str(tmp_path / "q"), "--set", *sets], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_results(tmp_path / "q" / "results.csv")
    assert [r["model"] for r in rows] == ["p3d_a"]
    assert int(rows[0]["train_steps"]) == QUICK_OVERRIDES["trainer.max_steps"]
    assert not rows[0].get("paper_scale_clips_per_s")
