"""The machine's ceiling: measured peak GFLOP/s per dtype, and a benchmark row measured against it.

A model's GFLOP/s is bounded by the best large GEMM or convolution the device runs, so
``p3d-bench``'s "of ceiling" column is achieved GFLOP/s (clips/s x FLOPs per clip) over the best
of :func:`measure_ceiling`'s ops in the setting's precision.
"""
from __future__ import annotations

import statistics
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from p3d_lightning.precision import DTYPES, bf16_supported, dtype_name
from p3d_lightning.speed.config import ModelStats, SpeedResult
from p3d_lightning.speed.environment import device_name
from p3d_lightning.speed.timing import time_calls

__all__ = ["bench_row", "measure_ceiling", "peak_gflops"]


def _gflops(flops: float, fn, device: torch.device, repeats: int) -> Tuple[float, float]:
    """(best, median) GFLOP/s of ``fn`` over ``repeats`` timed calls after one warm-up call."""
    times = time_calls(lambda i: fn(), device, warmup=1, repeats=repeats).times
    return flops / min(times) / 1e9, flops / statistics.median(times) / 1e9


@torch.inference_mode()
def measure_ceiling(device: str | torch.device | None = None, *, quick: bool = False,
                    repeats: int = 5) -> Dict[str, Any]:
    """Measured peak GFLOP/s of this device: the best of several large GEMMs and convs per dtype.

    Ops (CPU; ``quick`` shrinks each): matmul 2048^3; in channels_last_3d, a 1x1x1 conv
    256->1024 on (8, 256, 8, 40, 40), a 1x3x3 conv 128->128 on (8, 128, 8, 40, 40) and a 3x1x1
    conv 256->256 on (8, 256, 8, 20, 20) (the P3D unit's own shapes), and the 1x1x1 and 1x3x3
    convs in NCDHW. CUDA: an 8192^3 matmul and convs 4x larger. A model's GFLOP/s is bounded by
    the best of these, so ``<dtype>_peak_gflops`` (the max over ops, best of ``repeats``) is
    the ceiling of the fraction-of-peak column; ``<op>_<dtype>_gflops`` and
    ``..._gflops_median`` are reported per op. bf16 only where it runs natively
    (:func:`p3d_lightning.precision.bf16_supported`); fp16 on CUDA.
    """
    device = torch.device(device or "cpu")
    cuda = device.type == "cuda"
    scale = 4 if cuda else 1
    if quick:
        n = 512
        convs = [("conv1x1", (1, 64, 2, 16, 16), 256, (1, 1, 1), (0, 0, 0), True),
                 ("conv1x3x3", (1, 32, 2, 16, 16), 32, (1, 3, 3), (0, 1, 1), True)]
    else:
        n = 8192 if cuda else 2048
        convs = [("conv1x1", (8 * scale, 256, 8, 40, 40), 1024, (1, 1, 1), (0, 0, 0), True),
                 ("conv1x3x3", (8 * scale, 128, 8, 40, 40), 128, (1, 3, 3), (0, 1, 1), True),
                 ("conv3x1x1", (8 * scale, 256, 8, 20, 20), 256, (3, 1, 1), (1, 0, 0), True),
                 ("conv1x1_ncdhw", (8 * scale, 256, 8, 40, 40), 1024, (1, 1, 1), (0, 0, 0), False),
                 ("conv1x3x3_ncdhw", (8 * scale, 128, 8, 40, 40), 128, (1, 3, 3), (0, 1, 1), False)]
    dtypes = [torch.float32]
    if bf16_supported(device):
        dtypes.append(torch.bfloat16)
    if cuda:
        dtypes.append(torch.float16)
    out: Dict[str, Any] = {"device": str(device), "device_name": device_name(device),
                           "torch_threads": torch.get_num_threads()}
    for dt in dtypes:
        name = dtype_name(dt)
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        out[f"matmul_{name}_gflops"], out[f"matmul_{name}_gflops_median"] = _gflops(
            2 * n ** 3, lambda: torch.mm(a, b), device, repeats)
        peak = out[f"matmul_{name}_gflops"]
        del a, b
        for op, shape, cout, k, pad, cl in convs:
            conv = nn.Conv3d(shape[1], cout, k, padding=pad, bias=False).to(device=device, dtype=dt)
            x = torch.randn(shape, device=device, dtype=dt)
            if cl:
                conv = conv.to(memory_format=torch.channels_last_3d)
                x = x.contiguous(memory_format=torch.channels_last_3d)
            n_, c_, t_, h_, w_ = shape
            t_out = t_ + 2 * pad[0] - k[0] + 1
            flops = 2 * n_ * c_ * cout * k[0] * k[1] * k[2] * t_out * h_ * w_
            out[f"{op}_{name}_gflops"], out[f"{op}_{name}_gflops_median"] = _gflops(
                flops, lambda: conv(x), device, repeats)
            peak = max(peak, out[f"{op}_{name}_gflops"])
            del conv, x
        out[f"{name}_peak_gflops"] = peak
    return out


def peak_gflops(ceiling: Dict[str, Any], precision: str) -> Optional[float]:
    """The ceiling of a precision name (``fp32``, ``bf16``, ``bf16-mixed``, ...; the fp32 one
    where the device has no measured peak in that dtype)."""
    name = dtype_name(DTYPES.get(str(precision).lower(), torch.float32))
    return ceiling.get(f"{name}_peak_gflops") or ceiling.get("fp32_peak_gflops")


def bench_row(model: str, stats: ModelStats, rounds: Sequence[SpeedResult], *, passes: int,
              baseline: Optional[float], is_baseline: bool = False,
              ceiling: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One ``p3d-bench`` row: the rounds of one setting merged (median over all their batches),
    against the plain fp32 rate ``baseline`` and the machine's ``ceiling``.

    ``passes``: forward-pass equivalents per clip (1 for inference; 3 for training, forward +
    the weight and input gradients). ``is_baseline``: this row is the fp32 one (speed-up 1).
    """
    merged = rounds[0].merged(rounds[1:])
    row = merged.as_dict()
    row.pop("batch_times_s")
    row.update(model=model, params=stats.params, gmacs_per_clip=stats.gmacs_per_clip, rounds=len(rounds),
               clips_per_s_per_round=[r.clips_per_s for r in rounds])
    gflop_per_clip = passes * 2 * stats.gmacs_per_clip
    row["achieved_gflops"] = row["clips_per_s"] * gflop_per_clip
    baseline = row["clips_per_s"] if is_baseline else baseline
    row["speedup_vs_fp32"] = row["clips_per_s"] / baseline if baseline else None
    if ceiling:
        peak = peak_gflops(ceiling, merged.precision)
        row["ceiling_gflops"] = peak
        row["fraction_of_ceiling"] = row["achieved_gflops"] / peak if peak else None
        if peak:
            row["ceiling_clips_per_s"] = peak / gflop_per_clip
    return row
