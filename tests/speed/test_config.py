"""SpeedConfig (the ablation's `speed:` section, parsed once), SpeedResult and ModelStats."""
import pytest
import torch
from torch import nn

from p3d_lightning.speed.config import ModelStats, SpeedConfig, SpeedResult


def test_speed_config_defaults_and_yaml_forms():
    cfg = SpeedConfig.from_mapping({})
    assert cfg == SpeedConfig() and cfg.setting == "fast"
    assert (cfg.batch_size, cfg.warmup, cfg.repeats, cfg.agreement_batches) == (8, 2, 5, 8)
    assert cfg.paper_batch(16) == 8 and cfg.paper_batch(1) == 32  # clips vs frames
    cfg = SpeedConfig.from_mapping({"fast_path": False, "agreement_batches": "all", "paper_batch_size": 4,
                                    "paper_max_seconds": 2})
    assert cfg.setting == "fp32" and cfg.agreement_batches is None and cfg.paper_batch(16) == 4
    assert isinstance(cfg.paper_max_seconds, float)
    assert SpeedConfig.from_mapping(None) == SpeedConfig()


def test_speed_config_rejects_unknown_keys_and_bad_values_naming_the_file(tmp_path):
    where = tmp_path / "ablation.yaml"
    with pytest.raises(ValueError, match=r"ablation.yaml.*unknown key.*'batchsize'"):
        SpeedConfig.from_mapping({"batchsize": 8}, where)
    with pytest.raises(ValueError, match=r"ablation.yaml.*speed.fast_path.*true or false"):
        SpeedConfig.from_mapping({"fast_path": "yes"}, where)
    with pytest.raises(ValueError, match=r"speed.repeats"):
        SpeedConfig.from_mapping({"repeats": "many"}, where)
    with pytest.raises(ValueError, match=r"ablation.yaml.*repeats must be >= 1"):
        SpeedConfig.from_mapping({"repeats": 0}, where)
    with pytest.raises(ValueError, match="mapping"):
        SpeedConfig.from_mapping([1, 2], where)


def _result(times, **kw):
    base = dict(setting="s", batch_times_s=tuple(times), batch_size=4, clip_shape=(3, 8, 16, 16), device="cpu",
                device_name="cpu", precision="fp32", channels_last=False, warmup=1, repeats=len(times))
    return SpeedResult(**{**base, **kw})


def test_speed_result_statistics_and_merged_rounds():
    r = _result([0.1, 0.3, 0.2])
    assert r.clips_per_s == pytest.approx(4 / 0.2) and r.frames_per_s == pytest.approx(8 * 4 / 0.2)
    merged = r.merged([_result([0.4, 0.5])])
    assert merged.batch_times_s == (0.1, 0.3, 0.2, 0.4, 0.5)
    assert merged.clips_per_s == pytest.approx(4 / 0.3)  # the median over every round's batches
    assert merged.repeats == 3  # the first round's settings
    row = r.as_dict()
    assert row["clip_shape"] == [3, 8, 16, 16] and "minor_faults_per_batch" in row and "loss_first" not in row
    train = _result([0.1], loss_first=2.0, loss_last=1.0, peak_mem_mb=8.0)
    assert train.training and train.peak_mem_mb_per_clip == 2.0
    row = train.as_dict()
    assert row["peak_mem_mb_per_clip"] == 2.0 and "fused_ops" not in row and "minor_faults_per_batch" not in row
    cols = r.columns("infer")
    assert cols["infer_shape"] == (3, 8, 16, 16) and cols["infer_batch_size"] == 4


def test_model_stats_counts_with_models_complexity():
    net = nn.Sequential(nn.Conv3d(3, 4, 1, bias=False), nn.Flatten(), nn.Linear(4 * 2 * 3 * 3, 5))
    stats = ModelStats.of(net, (3, 2, 3, 3))
    params = 3 * 4 + 72 * 5 + 5
    assert stats.params == params and stats.size_mb == params * 4 / 2**20
    assert stats.gmacs_per_clip == pytest.approx((3 * 4 * 18 + 72 * 5) / 1e9)
    assert stats.as_dict()["clip_shape"] == (3, 2, 3, 3)
    assert torch.is_tensor(next(net.parameters()))  # the model itself is untouched (counted on meta)
    assert next(net.parameters()).device.type == "cpu"
