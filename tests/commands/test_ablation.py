"""p3d-ablation as the user runs it: killed and re-run, two processes (gloo), --quick."""

import yaml

import paths
from p3d_lightning.ablation import read_results


def _shipped_ablation(tmp_path, models=("resnet50", "p3d_a")):
    """An ablation file over the SHIPPED synthetic run configs, speed columns kept cheap."""
    exp = paths.EXPERIMENTS / "synthetic"
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
               PYTHONPATH=os.pathsep.join([str(paths.TESTS), os.environ.get("PYTHONPATH", "")]))
    if wandb != "disabled":
        env.pop("WANDB_DIR")  # W&B files in the output folder, as without WANDB_DIR (which would take them)
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


def test_ablation_with_seeds_killed_and_rerun_finishes_every_seed(tmp_path, tiny_synthetic_root):
    """`p3d-ablation --seeds 0 1` on the shipped configs, killed (-9) inside P3D-A's first seed and
    run again: every (model, seed) ends up in results.csv once, the killed seed resumed from its
    last.ckpt, and summary.csv / paired.csv / table.md carry the intervals."""
    import csv
    import json
    import signal

    cfg = _shipped_ablation(tmp_path)
    killer = {"class_path": "resume_killer.KillAt",
              "init_args": {"hook": "train_batch_start", "step": 5, "arch": "p3d_a", "marker": str(tmp_path / "killed")}}
    args = ["--config", str(cfg), "--output", str(tmp_path / "out"), "--seeds", "0", "1",
            "--set", *_tiny_sets(tiny_synthetic_root), "trainer.callbacks=" + json.dumps([killer])]
    p = _ablation_cli(args, tmp_path)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert [(r["model"], r["seed"]) for r in read_results(tmp_path / "out" / "results.csv")] == [("resnet50", 0)]
    p = _ablation_cli(args, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "p3d_a/seed0: training (resuming from" in p.stdout and "resnet50/seed0: already in" in p.stdout
    rows = read_results(tmp_path / "out" / "results.csv")
    assert [(r["model"], r["seed"]) for r in rows] == [("resnet50", 0), ("resnet50", 1), ("p3d_a", 0), ("p3d_a", 1)]
    assert all(int(r["train_steps"]) == 6 for r in rows)
    with (tmp_path / "out" / "summary.csv").open() as f:
        assert [(r["model"], r["n_seeds"]) for r in csv.DictReader(f)] == [("resnet50", "2"), ("p3d_a", "2")]
    with (tmp_path / "out" / "paired.csv").open() as f:
        assert [(r["model_a"], r["model_b"]) for r in csv.DictReader(f)] == [("p3d_a", "resnet50")]
    assert "### Across seeds" in (tmp_path / "out" / "table.md").read_text()
    assert "across seeds: " in p.stdout and "95% interval" in p.stdout  # the printed table and paths
