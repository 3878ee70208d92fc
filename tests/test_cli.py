"""The p3d command: fit / validate / test / predict on a synthetic config at tiny size."""

import glob
import os

import pytest
import yaml

from p3d_lightning.commands.p3d import main
from p3d_lightning.experiment import instantiate_from_config
from p3d_lightning.module import default_precision
from training_utils import quiet_warnings

quiet_warnings()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_args(root, tmp):
    return [
        "--config", os.path.join(REPO, "experiments", "synthetic", "p3d.yaml"),
        "--model.arch", "p3d_tiny", "--model.width_mult", "0.125",
        "--data.root", str(root), "--data.num_classes", "4", "--data.resize", "[40, 52]",
        "--data.crop_size", "32", "--data.num_eval_clips", "2", "--data.batch_size", "4",
        "--data.eval_batch_size", "8", "--data.num_workers", "0", "--data.progress", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true",
        "--checkpoint.dirpath", str(tmp / "ckpt"), "--features.output_dir", str(tmp / "feats"),
    ]


def test_fit_test_predict_round_trip(tiny_synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
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


def test_num_classes_is_written_once_and_precision_defaults(tiny_synthetic_root, tmp_path):
    cfg = yaml.safe_load(open(os.path.join(REPO, "experiments", "synthetic", "p3d.yaml")))
    cfg["data"].update(root=str(tiny_synthetic_root), num_classes=4)
    model, dm, trainer_kwargs = instantiate_from_config(cfg, source="synthetic/p3d.yaml")
    assert model.hparams.num_classes == 4 == dm.num_classes
    assert trainer_kwargs["precision"] == default_precision()
    assert trainer_kwargs["seed_everything"] == 0
    cfg["data"]["dataset"] = "no-such-dataset"
    with pytest.raises(ValueError, match="synthetic/p3d.yaml"):
        instantiate_from_config(cfg, source="synthetic/p3d.yaml")


def test_class_path_sections_are_accepted(tiny_synthetic_root):
    cfg = yaml.safe_load(open(os.path.join(REPO, "experiments", "synthetic", "resnet50.yaml")))
    cfg["data"] = {"class_path": "p3d_lightning.data.VideoDataModule",
                   "init_args": {**cfg["data"], "root": str(tiny_synthetic_root), "num_classes": 4}}
    model, dm, _ = instantiate_from_config(cfg)
    assert model.hparams.arch == "resnet50" and dm.clip_len == 1


def test_instantiate_from_config_applies_dotted_overrides():
    from pathlib import Path

    from p3d_lightning.experiment import apply_overrides, instantiate_from_config

    path = Path(__file__).resolve().parents[1] / "experiments" / "synthetic" / "p3d.yaml"
    model, dm, trainer_kwargs = instantiate_from_config(
        str(path), overrides={"trainer.max_steps": 7, "data.batch_size": 3, "model.lr": 0.5})
    assert trainer_kwargs["max_steps"] == 7 and dm.batch_size == 3 and model.hparams.lr == 0.5
    assert apply_overrides({"a": 1}, {"b.c": 2}) == {"a": 1, "b": {"c": 2}}
