"""Every experiment YAML parses and instantiates (model + data module + trainer settings),
on a fake dataset tree made of tiny synthetic videos."""

import glob
import os

import pytest
import yaml

from p3d_lightning.experiment import instantiate_from_config
from training_utils import quiet_warnings

quiet_warnings()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP = os.path.join(REPO, "experiments")
RUN_CONFIGS = sorted(p for p in glob.glob(os.path.join(EXP, "**", "*.yaml"), recursive=True)
                     if not os.path.basename(p).startswith("ablation_"))
TABLE1 = ["resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d"]


def test_expected_configs_exist():
    names = {os.path.relpath(p, EXP) for p in RUN_CONFIGS}
    for arch in TABLE1:
        assert f"ucf101/{arch}.yaml" in names and f"synthetic/{arch}.yaml" in names
    assert {"kinetics/p3d199.yaml", "sports1m/p3d199.yaml", "ucf101/p3d199_finetune.yaml",
            "ucf101/p3d199_features.yaml"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: os.path.relpath(p, EXP))
def test_config_instantiates(path, tiny_synthetic_root):
    raw = yaml.safe_load(open(path))
    assert "num_classes" not in raw["model"], "num_classes is written once, in data"
    raw["data"]["root"] = str(tiny_synthetic_root)
    if raw["trainer"].get("accelerator") == "gpu":  # multi-GPU configs: build the trainer on CPU here
        raw["trainer"]["accelerator"] = "cpu"
    model, dm, trainer_kwargs = instantiate_from_config(raw, source=path)
    assert model.hparams.num_classes == dm.num_classes == raw["data"]["num_classes"]
    assert model.hparams.arch == raw["model"]["arch"]
    rel = os.path.relpath(path, EXP)
    if rel.startswith("synthetic/"):
        assert dm.horizontal_flip is False  # a flip reverses the synthetic motion classes
        dm.num_classes = 4  # the tiny tree has 4 classes; the real synthetic set has 8
        dm.setup("fit")
        assert len(dm.train_dataset) > 0
    if rel.startswith("ucf101/") and raw["model"]["arch"] in TABLE1:
        # the paper's Table 1 settings
        hp = model.hparams
        assert (hp.lr, hp.lr_step_size, hp.lr_gamma, hp.dropout, hp.partial_bn) == (0.001, 3000, 0.1, 0.9, True)
        assert trainer_kwargs["max_steps"] == 7500
        devices = trainer_kwargs["devices"]
        assert int(devices) * dm.batch_size * trainer_kwargs["accumulate_grad_batches"] == 128
        frames = hp.arch == "resnet50"
        assert (dm.clip_len, dm.crop_size, dm.num_eval_clips) == ((1, 224, 25) if frames else (16, 160, 20))


def test_ablation_configs_point_to_run_configs():
    for path in glob.glob(os.path.join(EXP, "ablation_*.yaml")):
        raw = yaml.safe_load(open(path))
        assert set(raw["runs"]) == set(TABLE1), path
        for rel in raw["runs"].values():
            assert os.path.isfile(os.path.join(EXP, rel)), (path, rel)
