"""experiment.py: an experiment YAML instantiated outside the CLI (num_classes written once, the
default precision, dotted overrides, class_path sections) as ``p3d`` and the ablation read it."""

import pytest

from p3d_lightning.experiment import apply_overrides, instantiate_from_config, parse_dotted_args, read_config
from p3d_lightning.module import default_precision
from paths import EXPERIMENTS


def test_num_classes_is_written_once_and_precision_defaults(tiny_synthetic_root, tmp_path):
    cfg = read_config(EXPERIMENTS / "synthetic" / "p3d.yaml")
    cfg["data"].update(root=str(tiny_synthetic_root), num_classes=4)
    model, dm, trainer_kwargs = instantiate_from_config(cfg, source="synthetic/p3d.yaml")
    assert model.hparams.num_classes == 4 == dm.num_classes
    assert trainer_kwargs["precision"] == default_precision()
    assert trainer_kwargs["seed_everything"] == 0
    cfg["data"]["dataset"] = "no-such-dataset"
    with pytest.raises(ValueError, match="synthetic/p3d.yaml"):
        instantiate_from_config(cfg, source="synthetic/p3d.yaml")


def test_class_path_sections_are_accepted(tiny_synthetic_root):
    cfg = read_config(EXPERIMENTS / "synthetic" / "resnet50.yaml")
    cfg["data"] = {"class_path": "p3d_lightning.data.VideoDataModule",
                   "init_args": {**cfg["data"], "root": str(tiny_synthetic_root), "num_classes": 4}}
    model, dm, _ = instantiate_from_config(cfg)
    assert model.hparams.arch == "resnet50" and dm.clip_len == 1


def test_instantiate_from_config_applies_dotted_overrides():
    path = EXPERIMENTS / "synthetic" / "p3d.yaml"
    model, dm, trainer_kwargs = instantiate_from_config(
        str(path), overrides={"trainer.max_steps": 7, "data.batch_size": 3, "model.lr": 0.5})
    assert trainer_kwargs["max_steps"] == 7 and dm.batch_size == 3 and model.hparams.lr == 0.5
    assert apply_overrides({"a": 1}, {"b.c": 2}) == {"a": 1, "b": {"c": 2}}


def test_dotted_arguments_are_overrides_like_p3ds_options():
    assert parse_dotted_args(["--data.root", "/x", "--trainer.max_steps=10", "--data.resize", "[40, 52]",
                              "--model.lr", "-0.5"]) == {
        "data.root": "/x", "trainer.max_steps": 10, "data.resize": [40, 52], "model.lr": -0.5}
    for bad, match in ((["--root", "x"], "--root"), (["--data.root"], "expects a value"), (["x"], "'x'")):
        with pytest.raises(ValueError, match=match):
            parse_dotted_args(bad)


def test_model_init_caffe_reaches_the_network_from_the_shipped_config():
    """``--model.init caffe`` on the shipped synthetic config: the prototxts' fc filler (std 0.001)."""
    model, _, _ = instantiate_from_config(str(EXPERIMENTS / "synthetic" / "p3d.yaml"),
                                          overrides={"model.init": "caffe"})
    assert model.hparams.init == "caffe"
    assert abs(float(model.model.fc.weight.std()) - 0.001) < 3e-4
    default, _, _ = instantiate_from_config(str(EXPERIMENTS / "synthetic" / "p3d.yaml"))
    assert default.hparams.init == "kaiming" and float(default.model.fc.weight.std()) > 0.01
