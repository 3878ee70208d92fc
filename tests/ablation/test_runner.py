"""The ablation runner on a tiny synthetic set: outputs, resume without retraining, bad input."""

import csv

import pytest
import yaml

from p3d_lightning.ablation import AblationError, load_ablation_config, run_ablation


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
    monkeypatch.delenv("WANDB_DIR")  # W&B files in the output folder (WANDB_DIR would take them)
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
