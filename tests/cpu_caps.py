"""What this CPU runs, for test markers: decided by the probe in p3d_lightning.precision.

``requires_bf16`` skips a test where bf16 kernels do not run (AVX2-only CPUs, or any machine
with ``P3D_CPU_BF16=0``), naming the reason the probe found.
"""
import pytest

from p3d_lightning.precision import cpu_capabilities

_CAPS = cpu_capabilities()

requires_bf16 = pytest.mark.skipif(
    not _CAPS.bf16_runs,
    reason=f"bf16 kernels do not run on this CPU ({_CAPS.describe()}: {_CAPS.missing_for_bf16()})")

#: the reduced-precision dtypes this CPU runs (fp32 always), for parametrised tests
RUNNABLE_DTYPES = ["fp32"] + (["bf16"] if _CAPS.bf16_runs else [])
