"""measure_ceiling: the measured peak GFLOP/s per dtype."""

from p3d_lightning.speed.ceiling import measure_ceiling


def test_measure_ceiling_quick():
    c = measure_ceiling("cpu", quick=True, repeats=1)
    assert c["matmul_fp32_gflops"] > 0 and c["conv1x1_fp32_gflops"] > 0
    assert c["fp32_peak_gflops"] >= c["matmul_fp32_gflops"]
    assert "device_name" in c
