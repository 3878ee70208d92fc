"""measure_inference_speed: what it records, the fast path's precision, the time budget (no timing asserts)."""

import pytest
import torch
from torch import nn

from p3d_lightning.speed.inference import measure_inference_speed


def _tiny_net():
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))


def test_measure_inference_speed_records_settings():
    net = _tiny_net()
    res = measure_inference_speed(net, (3, 4, 8, 8), batch_size=2, warmup=1, repeats=3,
                                  setting_name="plain")
    assert res.setting == "plain" and res.clips_per_s > 0
    assert res.frames_per_s == pytest.approx(4 * res.clips_per_s)
    assert len(res.batch_times_s) == 3
    stats = res.stats()
    assert stats["batch_time_ms_min"] <= stats["batch_time_ms_median"] <= stats["batch_time_ms_max"]
    assert res.precision == "fp32" and res.batch_size == 2 and res.clip_shape == (3, 4, 8, 8)
    assert res.as_dict()["clip_shape"] == [3, 4, 8, 8]  # p3d-bench's JSON: a list
    assert res.torch_threads == torch.get_num_threads()
    assert res.torch_version == torch.__version__ and res.device == "cpu"
    assert res.device_name and res.peak_mem_mb is not None and res.peak_mem_mb >= 0
    with pytest.raises(ValueError, match="repeats"):
        measure_inference_speed(net, (3, 4, 8, 8), batch_size=2, repeats=0)


def test_measure_inference_speed_fast_path_precision():
    from p3d_lightning.models.fastpath import optimize_for_inference

    from p3d_lightning.precision import bf16_supported

    fast = optimize_for_inference(_tiny_net())  # auto: bf16 where native, else fp32
    res = measure_inference_speed(fast, (3, 4, 8, 8), batch_size=2, warmup=0, repeats=1)
    assert res.precision == ("bf16" if bf16_supported("cpu") else "fp32")
    assert res.channels_last is True


def test_measure_inference_speed_time_budget_stops_early():
    """max_seconds bounds the timed passes (at least two), so a slow CPU is not measured for minutes."""
    res = measure_inference_speed(_tiny_net(), (3, 4, 8, 8), batch_size=2, warmup=0, repeats=1000,
                                  max_seconds=0.0, measure_memory=False)
    assert res.repeats == 2 and len(res.batch_times_s) == 2
