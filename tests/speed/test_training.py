"""measure_training_speed: runs on a copy (the caller's weights unchanged), refuses unknown precisions."""

import pytest
import torch
from torch import nn

from p3d_lightning.speed.training import measure_training_speed


def _tiny_net():
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))


def test_measure_training_speed_does_not_touch_model():
    net = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    from cpu_caps import _CAPS

    for prec, cl in [("fp32", False), ("fp32", True)] + ([("bf16-mixed", True)] if _CAPS.bf16_runs else []):
        res = measure_training_speed(net, (3, 4, 8, 8), batch_size=2, num_classes=3, precision=prec,
                                     channels_last=cl, steps=2, warmup=1)
        assert res.clips_per_s > 0 and res.precision == prec
        assert res.peak_mem_mb_per_clip is not None
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="precision"):
        measure_training_speed(net, (3, 4, 8, 8), precision="int8")
