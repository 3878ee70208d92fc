"""Ablation configs: errors name the file, every shipped config parses, the speed section is typed once."""

import pytest

import paths
from p3d_lightning.ablation import AblationConfig, AblationError, load_ablation_config


def test_config_errors_name_the_file(tmp_path):
    with pytest.raises(AblationError, match="not found"):
        load_ablation_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruns: {}\n")
    with pytest.raises(AblationError, match="bad.yaml"):
        load_ablation_config(bad)


def test_every_ablation_config_in_experiments_parses():
    configs = sorted(paths.EXPERIMENTS.glob("ablation_*.yaml"))
    assert configs, "no ablation configs in experiments/"
    for path in configs:
        cfg = load_ablation_config(path)
        if path.name == "ablation_clip_length.yaml":  # the clip-length axis: P3D ResNet at 8 / 16 / 32 frames
            assert list(cfg.runs) == ["p3d_t8", "p3d_t16", "p3d_t32"], path
        else:  # Table 1's rows
            assert list(cfg.runs) == ["resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d"], path
        for run in cfg.runs.values():
            assert run.is_file(), f"{path}: {run} missing"


def test_clip_length_configs_differ_from_p3d_only_in_frames():
    """The clip-length rows resolve to the shipped P3D ResNet config with another data.clip_len."""
    from p3d_lightning.experiment import read_config

    cfg = load_ablation_config(paths.EXPERIMENTS / "ablation_clip_length.yaml")
    resolved = {name: read_config(str(path)) for name, path in cfg.runs.items()}
    reference = resolved["p3d_t16"]
    for name, frames in (("p3d_t8", 8), ("p3d_t32", 32)):
        got = resolved[name]
        assert got["data"]["clip_len"] == frames
        differ = {f"{section}.{key}" for section in reference if isinstance(reference[section], dict)
                  for key in set(reference[section]) | set(got.get(section, {}))
                  if reference[section].get(key) != got.get(section, {}).get(key)}
        assert differ == {"data.clip_len", "run.name"}, (name, differ)


def test_speed_section_is_typed_once_and_unknown_keys_name_the_file(tmp_path):
    from p3d_lightning.speed.config import SpeedConfig

    path = tmp_path / "abl.yaml"
    path.write_text("runs: {p3d: p3d.yaml}\nspeed: {batch_size: 2, paper_scale: false, agreement_batches: all}\n")
    cfg = load_ablation_config(path)
    assert cfg.speed == SpeedConfig(batch_size=2, paper_scale=False, agreement_batches=None)
    path.write_text("runs: {p3d: p3d.yaml}\nspeed: {batch: 2}\n")
    with pytest.raises(AblationError, match=r"abl.yaml.*'batch'"):
        load_ablation_config(path)
    # built in code (notebooks, tests): a mapping is parsed the same way
    assert AblationConfig(name="x", runs={}, output_dir=tmp_path, speed={"repeats": 3}).speed.repeats == 3


def test_quick_config_shrinks_runs_and_writes_beside_the_output(tmp_path):
    from p3d_lightning.ablation import QUICK_OVERRIDES, quick_config

    cfg = AblationConfig(name="x", runs={}, output_dir=tmp_path / "out",
                         overrides={"trainer.max_steps": 999, "data.root": "/d"})
    quick = quick_config(cfg)
    assert quick.output_dir == tmp_path / "out_quick"
    assert quick.overrides == {"data.root": "/d", **QUICK_OVERRIDES}  # --quick wins over the config
    assert not quick.speed.paper_scale and quick.speed.repeats == 2 and quick.speed.agreement_batches == 2
    assert cfg.speed.paper_scale  # the config itself is unchanged
