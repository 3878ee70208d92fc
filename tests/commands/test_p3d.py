"""The p3d command: fit / validate / test / predict on a synthetic config at tiny size."""

import glob
import os

import yaml

from p3d_lightning.commands.p3d import main
from paths import EXPERIMENTS
from training_utils import quiet_warnings

quiet_warnings()


def _tiny_args(root, tmp):
    return [
        "--config", str(EXPERIMENTS / "synthetic" / "p3d.yaml"),
        "--model.arch", "p3d_tiny", "--model.width_mult", "0.125",
        "--data.root", str(root), "--data.num_classes", "4", "--data.resize", "[40, 52]",
        "--data.crop_size", "32", "--data.num_eval_clips", "2", "--data.batch_size", "4",
        "--data.eval_batch_size", "8", "--data.num_workers", "0", "--data.progress", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
        "--checkpoint.dirpath", str(tmp / "ckpt"), "--features.output_dir", str(tmp / "feats"),
    ]


def test_fit_test_predict_round_trip(tiny_synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_DIR", raising=False)  # W&B files in the run folder, as without the harness
    args = _tiny_args(tiny_synthetic_root, tmp_path)
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.check_val_every_n_epoch", "1"])
    assert os.path.isfile(tmp_path / "ckpt" / "last.ckpt")
    best = glob.glob(str(tmp_path / "ckpt" / "best-step*.ckpt"))
    assert len(best) == 1
    # CSV metrics and the resolved config are written next to each other, in the run folder
    run = tmp_path / "runs" / "synthetic_p3d" / "version_0"
    csv = run / "logs" / "fit" / "metrics.csv"
    assert "val/video_acc1" in csv.read_text()
    saved = yaml.safe_load((run / "logs" / "fit" / "config.yaml").read_text())
    assert saved["data"]["num_classes"] == 4 and "num_classes" not in saved["model"]  # written once, linked
    assert (run / "config.yaml").is_file() and (run / "run.json").is_file()

    main(["test", *args, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    main(["predict", *args, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    assert os.path.isfile(tmp_path / "feats" / "features.pt")
    assert os.path.isfile(tmp_path / "feats" / "features.manifest.json")
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "feats", "runs"]  # nothing else in the working directory


def test_second_fit_gets_its_own_run_folder_and_defaults_point_inside_it(tiny_synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_DIR", raising=False)  # W&B files in the run folder, as without the harness
    args = [a for a in _tiny_args(tiny_synthetic_root, tmp_path)]
    cut = args.index("--checkpoint.dirpath")
    args = args[:cut]  # default checkpoint and feature folders
    for _ in range(2):
        main(["fit", *args, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"])
    for v in ("version_0", "version_1"):
        run = tmp_path / "runs" / "synthetic_p3d" / v
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "logs" / "fit" / "metrics.csv").is_file()
    assert sorted(os.listdir(tmp_path)) == ["runs"]
