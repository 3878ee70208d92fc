"""PeakMemory: the peak memory of a block."""

import torch

from p3d_lightning.speed.environment import PeakMemory


def test_peak_memory_sees_allocation():
    with PeakMemory("cpu") as mem:
        x = torch.ones(8 * 2**20)  # 32 MB
        x += 1
        del x
    assert mem.peak_mb is not None and mem.peak_mb >= 0
    if mem.method == "rss_hwm_delta":
        assert mem.peak_mb > 16
