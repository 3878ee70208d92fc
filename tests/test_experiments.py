"""Every experiment YAML parses and instantiates (model + data module + trainer settings),
on a fake dataset tree made of tiny synthetic videos."""

import glob
import os

import pytest
import yaml

from p3d_lightning.experiment import ConfigError, instantiate_from_config, read_config
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
    raw = read_config(path)  # a variant is its base plus its own keys
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
        if os.path.basename(path) == "ablation_clip_length.yaml":  # one architecture at several clip lengths
            assert set(raw["runs"]) == {"p3d_t8", "p3d_t16", "p3d_t32"}, path
        else:
            assert set(raw["runs"]) == set(TABLE1), path
        for rel in raw["runs"].values():
            assert os.path.isfile(os.path.join(EXP, rel)), (path, rel)


def test_variants_are_small_and_name_their_base():
    """Each Table 1 row is its dataset's base plus the few keys that differ."""
    for dataset in ("synthetic", "ucf101"):
        base = read_config(os.path.join(EXP, dataset, "base.yaml"))
        for arch in TABLE1:
            path = os.path.join(EXP, dataset, f"{arch}.yaml")
            own = yaml.safe_load(open(path))
            assert own.pop("config") == "base.yaml"
            assert len(own) <= 9 and all("." in key for key in own), path
            composed = read_config(path)
            assert composed["model"]["arch"] == arch and composed["run"]["name"] == f"{dataset}_{arch}"
            assert composed["trainer"] == base["trainer"] or arch == "resnet50"


def test_variant_with_a_nested_class_section_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text(open(os.path.join(EXP, "synthetic", "base.yaml")).read())
    bad = tmp_path / "bad.yaml"
    bad.write_text("config: base.yaml\nmodel:\n  arch: p3d_a\n")
    with pytest.raises(ConfigError, match="bad.yaml.*dotted"):
        read_config(bad)
    (tmp_path / "orphan.yaml").write_text("config: missing.yaml\nmodel.arch: p3d_a\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        read_config(tmp_path / "orphan.yaml")


def test_print_config_of_a_variant_reproduces_the_run(tmp_path):
    """``p3d fit --config <variant> --print_config`` written to a file and read back as the only
    config gives the same resolved config, and equals the explicit two-file composition."""
    import subprocess
    import sys

    def printed(*configs):
        args = [a for c in configs for a in ("--config", str(c))]
        out = subprocess.run([sys.executable, "-m", "p3d_lightning.commands.p3d", "fit", *args, "--print_config"],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    variant = os.path.join(EXP, "synthetic", "p3d_a.yaml")
    once = printed(variant)
    (tmp_path / "resolved.yaml").write_text(once)
    assert printed(tmp_path / "resolved.yaml") == once
    assert printed(os.path.join(EXP, "synthetic", "base.yaml"), variant) == once
    assert yaml.safe_load(once)["model"]["arch"] == "p3d_a"
