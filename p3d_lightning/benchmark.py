"""Speed measurement: inference/training clips/s, the machine's ceiling, and ``p3d-bench``.

Public functions (also used by the ablation's callbacks):

- :func:`measure_inference_speed` -- clips/s of one model on synthetic input (inference
  mode, warm-up, fixed batch, median over repeats, device synchronised, no data loading).
- :func:`measure_ceiling` -- GFLOP/s of a large matmul and a large 1x1x1 conv
  (channels_last_3d) in fp32 and bf16: what this device can do at best.
- :func:`measure_training_speed` -- training clips/s (forward + backward + SGD step) of a
  plain model, fp32 or bf16 autocast, NCDHW or channels_last_3d.
- :func:`measure_data_pipeline` -- clips/s of the whole input pipeline (decode + sample +
  transform) through the data engineer's ``VideoDataModule`` with N workers.
- :func:`compare_fast_path` / :func:`check_fast_path_on_data` -- the fast path against plain
  fp32 on real clips / on the test clips of a trained checkpoint (top-1 agreement, logit
  difference, accuracy of each; ``--check``).

``p3d-bench`` (:func:`main`) runs them for the requested models and writes a table, CSV
and JSON. ``p3d-bench --help`` lists the options; ``docs/speed.md`` has measured numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

# glibc malloc: serve large activation buffers from the heap (no mmap) and never trim it, so
# that they are reused instead of being mmap'd and page-faulted again on every forward pass
# (P3D-50 fp32 batch 8: ~880k minor faults = 3.4 GB of fresh pages per batch by default, 0 with
# this). glibc caps mmap_threshold at 32 MiB (larger values are silently ignored), which is
# why mmap_max=0 is used rather than a big mmap_threshold.
MALLOC_TUNABLE = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"

# Inference settings compared by p3d-bench: name -> optimize_for_inference kwargs (None =
# the plain fp32 eager model, NCDHW contiguous).
INFERENCE_SETTINGS: Dict[str, Optional[Dict[str, Any]]] = {
    "fp32": None,
    "fp32_cl": dict(dtype="fp32", fold_bn=False, channels_last=True, fuse=False),
    "fp32_cl_fold": dict(dtype="fp32", fold_bn=True, channels_last=True, fuse=False),
    "bf16_autocast_cl": dict(dtype="bf16", autocast=True, fold_bn=False, channels_last=True),
    "bf16_fold_cl": dict(dtype="bf16", fold_bn=True, channels_last=True, fuse=False),
    "fp16_fold_cl": dict(dtype="fp16", fold_bn=True, channels_last=True, fuse=False),
    # the full fast path: on the CPU also conv + ReLU / add + ReLU fusion (models/fusion.py)
    "fast": dict(dtype="auto", fold_bn=True, channels_last=True),
    "fast_compile": dict(dtype="auto", fold_bn=True, channels_last=True, compile=True),
}
DEFAULT_CPU_SETTINGS = ["fp32", "fp32_cl", "bf16_autocast_cl", "bf16_fold_cl", "fast"]
#: CPU default where bf16 is not native (AVX2): the fast path resolves to fp32 + fused convs.
DEFAULT_CPU_SETTINGS_NO_BF16 = ["fp32", "fp32_cl", "fp32_cl_fold", "fast"]
DEFAULT_GPU_SETTINGS = ["fp32", "fp32_cl", "bf16_autocast_cl", "bf16_fold_cl", "fp16_fold_cl", "fast"]


# --------------------------------------------------------------------------------------
# Environment description
# --------------------------------------------------------------------------------------
def cpu_model_name() -> str:
    """CPU model string from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | torch.device | None = None) -> str:
    """'NVIDIA H100 80GB HBM3' for a CUDA device, 'AMD EPYC ... (2 cores, AVX-512 + AVX512_BF16, bf16 native)' for the CPU."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from p3d_lightning.precision import cpu_capabilities

    return f"{cpu_model_name()} ({os.cpu_count()} cores, {cpu_capabilities().describe()})"


def cpu_isa() -> str:
    """The CPU's ISA label for tables: 'AVX2', 'AVX-512', 'AVX-512 + AVX512_BF16', '... + AMX'."""
    from p3d_lightning.precision import cpu_capabilities

    return cpu_capabilities().isa_label


def environment_info(device: str | torch.device | None = None) -> Dict[str, Any]:
    """Device, threads and library versions recorded next to every measurement."""
    info = {
        "device": str(torch.device(device or "cpu")),
        "device_name": device_name(device),
        "cpu_isa": cpu_isa(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    with contextlib.suppress(Exception):
        info["onednn_version"] = ".".join(map(str, torch.backends.mkldnn.version())) \
            if hasattr(torch.backends.mkldnn, "version") else ""
    if torch.cuda.is_available():
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    for mod in ("pytorch_lightning", "av", "numpy"):
        with contextlib.suppress(Exception):
            info[f"{mod}_version"] = __import__(mod).__version__
    return info


def load_average() -> Optional[Tuple[float, float, float]]:
    """1/5/15-minute load average (how busy the shared machine was), or None."""
    with contextlib.suppress(OSError, AttributeError):
        return tuple(round(x, 2) for x in os.getloadavg())
    return None


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------
def _proc_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc), so that RSS is close to live memory."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Context manager measuring peak memory of a block, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` minus allocation at entry. CPU: peak RSS minus
    RSS at entry, using /proc/self/status VmHWM after resetting it via /proc/self/clear_refs
    (Linux; freed heap memory is first returned with ``malloc_trim`` so the baseline is close
    to live memory); where that is unavailable, the growth of ``ru_maxrss`` (a lower bound).
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.peak_mb: Optional[float] = None
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        _malloc_trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda_max_memory_allocated"
            return self
        self._reset_ok = False
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._reset_ok = True
        rss = _proc_status_kb("VmRSS")
        if self._reset_ok and rss is not None:
            self._base = rss
            self.method = "rss_hwm_delta"
        else:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss_delta"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
            self.peak_mb = peak / 2**20
        elif self.method == "rss_hwm_delta":
            hwm = _proc_status_kb("VmHWM") or self._base
            self.peak_mb = max(hwm - self._base, 0) / 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = max(peak - self._base, 0) / 1024


# --------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _precision_of(model: nn.Module) -> str:
    prec = getattr(model, "precision", None)
    if isinstance(prec, str):
        return prec
    p = next(iter(model.parameters()), None)
    from p3d_lightning.models.fastpath import dtype_name

    return dtype_name(p.dtype) if p is not None else "fp32"


def _timing_stats(times: Sequence[float], batch_size: int, frames_per_clip: int) -> Dict[str, Any]:
    med = statistics.median(times)
    return {
        "clips_per_s": batch_size / med,
        "frames_per_s": batch_size * frames_per_clip / med,
        "batch_time_ms_median": 1e3 * med,
        "batch_time_ms_mean": 1e3 * statistics.fmean(times),
        "batch_time_ms_min": 1e3 * min(times),
        "batch_time_ms_max": 1e3 * max(times),
        "batch_time_ms_std": 1e3 * (statistics.stdev(times) if len(times) > 1 else 0.0),
    }


def measure_inference_speed(model: nn.Module, clip_shape: Sequence[int] = (3, 16, 160, 160),
                            batch_size: int = 8, *, warmup: int = 3, repeats: int = 10,
                            device: str | torch.device | None = None,
                            setting_name: str = "", measure_memory: bool = True,
                            input_dtype: torch.dtype = torch.float32,
                            max_seconds: Optional[float] = None) -> Dict[str, Any]:
    """Inference throughput of ``model`` on a fixed synthetic batch.

    One random fp32 batch ``(batch_size, *clip_shape)`` is made on the device up front (data
    loading excluded); ``warmup`` untimed passes, then ``repeats`` timed passes under
    ``torch.inference_mode()``, each bracketed by a device synchronise. ``model`` is put in
    eval mode, and moved to ``device`` if given (default: where its parameters are).
    ``max_seconds`` bounds the timed part: passes stop once that much time is spent (at least
    two are timed), so a slow machine measures fewer repeats instead of taking minutes.

    Returns a dict: ``setting``, ``clips_per_s`` (median over repeats), ``frames_per_s``
    (clips/s x T), ``batch_time_ms_{median,mean,min,max,std}``, ``batch_times_s`` (raw),
    ``peak_mem_mb`` (of one extra untimed pass: RSS delta on CPU, max allocated on CUDA),
    ``minor_faults_per_batch`` (page faults: fresh memory touched per pass; see ``--malloc``),
    ``device``, ``device_name``, ``precision``, ``batch_size``, ``clip_shape``,
    ``torch_threads``, ``torch_version``, ``warmup``, ``repeats``.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"measure_inference_speed: need batch_size >= 1, repeats >= 1, "
                         f"warmup >= 0; got {batch_size}, {repeats}, {warmup}")
    clip_shape = tuple(int(s) for s in clip_shape)
    if len(clip_shape) not in (3, 4):
        raise ValueError(f"measure_inference_speed: clip_shape must be (C, T, H, W) or (C, H, W), "
                         f"got {clip_shape}")
    device = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != device:
        model = model.to(device)
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((batch_size, *clip_shape), generator=gen, dtype=torch.float32)
    x = x.to(device=device, dtype=input_dtype)
    frames = clip_shape[1] if len(clip_shape) == 4 else 1
    times: List[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and i >= 1 and sum(times) >= max_seconds:
                break
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        # memory: one extra untimed pass (PeakMemory trims the heap, which must not
        # disturb the timed passes)
        mem = PeakMemory(device) if measure_memory else contextlib.nullcontext()
        with mem:
            model(x)
    out = {"setting": setting_name}
    out.update(_timing_stats(times, batch_size, frames))
    out.update({
        "batch_times_s": times,
        "peak_mem_mb": getattr(mem, "peak_mb", None),
        "minor_faults_per_batch": faults / len(times),
        "device": str(device),
        "device_name": device_name(device),
        "precision": _precision_of(model),
        "channels_last": bool(getattr(model, "channels_last", False)),
        "folded_bn": int(getattr(model, "folded_bn", 0) or 0),
        # fused conv + ReLU / conv + add + ReLU calls and rewritten pools (CPU fast path)
        "fused_ops": sum((getattr(model, "fused_ops", None) or {}).get(k, 0)
                         for k in ("conv_relu", "conv_add_relu", "max_pool")),
        "batch_size": batch_size,
        "clip_shape": list(clip_shape),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "warmup": warmup,
        "repeats": len(times),
    })
    return out


# --------------------------------------------------------------------------------------
# Ceiling
# --------------------------------------------------------------------------------------
def _best_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> Tuple[float, float]:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


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
    from p3d_lightning.precision import bf16_supported

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
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dt]
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        best, med = _best_time(lambda: torch.mm(a, b), device, repeats)
        flops = 2 * n ** 3
        out[f"matmul_{name}_gflops"] = flops / best / 1e9
        out[f"matmul_{name}_gflops_median"] = flops / med / 1e9
        peak = out[f"matmul_{name}_gflops"]
        del a, b
        for op, shape, cout, k, pad, cl in convs:
            conv = nn.Conv3d(shape[1], cout, k, padding=pad, bias=False).to(device=device, dtype=dt)
            x = torch.randn(shape, device=device, dtype=dt)
            if cl:
                conv = conv.to(memory_format=torch.channels_last_3d)
                x = x.contiguous(memory_format=torch.channels_last_3d)
            best, med = _best_time(lambda: conv(x), device, repeats)
            n_, c_, t_, h_, w_ = shape
            t_out = t_ + 2 * pad[0] - k[0] + 1
            flops = 2 * n_ * c_ * cout * k[0] * k[1] * k[2] * t_out * h_ * w_
            out[f"{op}_{name}_gflops"] = flops / best / 1e9
            out[f"{op}_{name}_gflops_median"] = flops / med / 1e9
            peak = max(peak, out[f"{op}_{name}_gflops"])
            del conv, x
        out[f"{name}_peak_gflops"] = peak
    return out


# --------------------------------------------------------------------------------------
# Complexity (uses the models package when available, else forward hooks)
# --------------------------------------------------------------------------------------
def _count_macs(model: nn.Module, input_shape: Sequence[int]) -> float:
    """MACs of one forward pass on one clip, counted with hooks on conv and linear layers."""
    total = [0]

    def conv_hook(m, inp, out):
        k = 1
        for s in m.kernel_size:
            k *= s
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        total[0] += out.numel() // out.shape[0] * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            dev = _model_device(model)
            model(torch.zeros((1, *input_shape), device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return total[0]


def model_stats(model: nn.Module, input_shape: Sequence[int]) -> Dict[str, Any]:
    """``params``, ``size_mb`` and ``gmacs`` (per clip) of ``model``.

    Uses ``p3d_lightning.models.complexity.model_complexity`` when it exists, else counts
    conv/linear MACs with forward hooks.
    """
    try:
        from p3d_lightning.models.complexity import model_complexity
    except ImportError:
        model_complexity = None
    if model_complexity is not None:
        with contextlib.suppress(Exception):
            c = dict(model_complexity(model, input_shape=tuple(input_shape)))
            if "gmacs" in c:
                return {"params": int(c.get("params", 0)), "size_mb": float(c.get("size_mb", 0.0)),
                        "gmacs": float(c["gmacs"])}
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "size_mb": params * 4 / 1e6,
            "gmacs": _count_macs(model, input_shape) / 1e9}


# --------------------------------------------------------------------------------------
# Training speed
# --------------------------------------------------------------------------------------
def enable_activation_checkpointing(model: nn.Module, block_types: Optional[Tuple[type, ...]] = None,
                                    use_reentrant: bool = False) -> int:
    """Wrap residual blocks so that their activations are recomputed in backward.

    Trades ~30% more compute for much less activation memory (useful for P3D-199 on a GPU).
    ``block_types``: classes to wrap; default = every direct child of an ``nn.Sequential``
    named ``layer*`` (the ResNet stages). Modifies ``model`` in place; returns the count.
    """
    from torch.utils.checkpoint import checkpoint

    class _Ckpt(nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            if self.training and torch.is_grad_enabled():
                return checkpoint(self.block, x, use_reentrant=use_reentrant)
            return self.block(x)

    count = 0
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, nn.Sequential):
            continue
        leaf = name.rsplit(".", 1)[-1]
        for i, child in enumerate(list(mod)):
            wrap = isinstance(child, block_types) if block_types else leaf.startswith("layer")
            if wrap and not isinstance(child, _Ckpt):
                mod[i] = _Ckpt(child)
                count += 1
    return count


def measure_training_speed(model: nn.Module, clip_shape: Sequence[int] = (3, 16, 112, 112),
                           batch_size: int = 4, *, num_classes: Optional[int] = None,
                           precision: str = "fp32", channels_last: bool = False,
                           steps: int = 5, warmup: int = 2, num_batches: int = 4,
                           device: str | torch.device | None = None, lr: float = 1e-3,
                           setting_name: str = "", seed: int = 0) -> Dict[str, Any]:
    """Training throughput (forward + cross-entropy + backward + SGD step) of a plain model.

    Works on a deep copy of ``model`` (the caller's weights are not changed). ``precision``:
    ``'fp32'``, ``'bf16-mixed'`` or ``'16-mixed'`` (autocast; fp32 master weights; a grad
    scaler for fp16 on CUDA). ``channels_last``: model and input in channels_last_3d. The
    same ``num_batches`` random batches (seeded) are cycled for every setting. Returns the
    timing stats of :func:`measure_inference_speed` plus ``loss_first``/``loss_last``,
    ``peak_mem_mb`` and ``peak_mem_mb_per_clip`` of one extra untimed step.
    """
    if precision not in ("fp32", "bf16-mixed", "16-mixed"):
        raise ValueError(f"measure_training_speed: precision must be 'fp32', 'bf16-mixed' or "
                         f"'16-mixed', got {precision!r}")
    device = torch.device(device) if device is not None else _model_device(model)
    net = copy.deepcopy(model).to(device).train()
    if num_classes is None:
        fc = getattr(net, "fc", None)
        num_classes = fc.out_features if isinstance(fc, nn.Linear) else 10
    fmt = torch.channels_last_3d if len(clip_shape) == 4 else torch.channels_last
    if channels_last:
        net = net.to(memory_format=fmt)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(max(1, num_batches)):
        x = torch.randn((batch_size, *clip_shape), generator=gen)
        y = torch.randint(0, num_classes, (batch_size,), generator=gen)
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=fmt)
        batches.append((x, y.to(device)))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    amp_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if (amp_dtype == torch.float16 and device.type == "cuda") \
        else None
    loss_fn = nn.CrossEntropyLoss()
    losses: List[float] = []

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(net(x).float(), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))

    for i in range(warmup):
        step(i)
    _sync(device)
    times: List[float] = []
    for i in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        step(warmup + i)
        _sync(device)
        times.append(time.perf_counter() - t0)
    with PeakMemory(device) as mem:  # one extra untimed step (the heap trim must not be timed)
        step(warmup + steps)
    frames = clip_shape[1] if len(clip_shape) == 4 else 1
    out = {"setting": setting_name or (precision + ("_cl" if channels_last else ""))}
    out.update(_timing_stats(times, batch_size, frames))
    out.update({
        "batch_times_s": times, "loss_first": losses[0], "loss_last": losses[-1],
        "peak_mem_mb": mem.peak_mb,
        "peak_mem_mb_per_clip": (mem.peak_mb / batch_size) if mem.peak_mb is not None else None,
        "device": str(device), "device_name": device_name(device), "precision": precision,
        "channels_last": channels_last, "batch_size": batch_size, "clip_shape": list(clip_shape),
        "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "warmup": warmup, "repeats": steps,
    })
    del net, opt, batches
    gc.collect()
    return out


# --------------------------------------------------------------------------------------
# Data pipeline
# --------------------------------------------------------------------------------------
def measure_data_pipeline(root: str | os.PathLike, *, num_workers: int = 0, batch_size: int = 8,
                          num_batches: int = 10, clip_len: int = 16, crop_size: int = 160,
                          dataset: str = "synthetic", num_classes: Optional[int] = None,
                          stage: str = "train", warmup_batches: int = 1,
                          **datamodule_kwargs: Any) -> Dict[str, Any]:
    """Clips/s of the whole input pipeline (decode + sample + transform + collate).

    Builds ``p3d_lightning.data.VideoDataModule`` (``dataset='synthetic'`` generates its
    videos under ``root`` on first use), iterates ``num_batches`` batches of the ``stage``
    loader after ``warmup_batches`` (worker start-up excluded) and times them. No model runs.
    """
    from p3d_lightning.data import VideoDataModule

    if num_classes is None:
        if dataset != "synthetic":
            raise ValueError(f"measure_data_pipeline: num_classes is required for dataset={dataset!r}")
        num_classes = 2 * int(datamodule_kwargs.get("synthetic_num_pairs", 4))
    datamodule_kwargs.setdefault("progress", False)
    kwargs = dict(dataset=dataset, root=str(root), num_classes=num_classes, clip_len=clip_len,
                  crop_size=crop_size, batch_size=batch_size, num_workers=num_workers)
    kwargs.update(datamodule_kwargs)
    dm = VideoDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit" if stage == "train" else stage)
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader,
              "test": dm.test_dataloader}[stage]()
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:  # small dataset: start another epoch
            it = iter(loader)
            return next(it)

    batch = None
    for _ in range(warmup_batches):  # worker start-up and first decode excluded
        batch = next_batch()
    n_clips = 0
    t0 = time.perf_counter()
    for _ in range(num_batches):
        batch = next_batch()
        n_clips += int(batch["clip"].shape[0])
    elapsed = time.perf_counter() - t0
    del it
    shape = list(batch["clip"].shape[1:])
    return {"num_workers": num_workers, "batch_size": batch_size, "clips": n_clips,
            "seconds": elapsed, "clips_per_s": n_clips / elapsed if elapsed > 0 else float("nan"),
            "clip_shape": shape, "dataset": dataset, "stage": stage}


def workers_needed(model_clips_per_s: float, pipeline: Sequence[Dict[str, Any]]) -> Optional[int]:
    """Fewest workers whose measured pipeline rate reaches ``model_clips_per_s``.

    If no measured worker count suffices, extrapolate linearly from the best per-worker rate
    (an estimate: needs that many free cores). None if nothing was measured.
    """
    rows = sorted((r for r in pipeline if r.get("clips_per_s")), key=lambda r: r["num_workers"])
    for r in rows:
        if r["clips_per_s"] >= model_clips_per_s:
            return int(r["num_workers"])
    per_worker = [r["clips_per_s"] / max(r["num_workers"], 1) for r in rows]
    if not per_worker:
        return None
    return int(math.ceil(model_clips_per_s / max(per_worker)))


# --------------------------------------------------------------------------------------
# The p3d-bench command
# --------------------------------------------------------------------------------------
def _parse_shape(text: str) -> Tuple[int, ...]:
    parts = [int(p) for p in re.split(r"[x,\s]+", text.strip()) if p]
    if len(parts) == 3:
        return (3, *parts)  # TxHxW -> 3xTxHxW
    if len(parts) == 4:
        return tuple(parts)
    raise argparse.ArgumentTypeError(f"clip shape must be TxHxW or CxTxHxW (e.g. 16x160x160), got {text!r}")


def _parse_model_spec(spec: str, default_bs: Sequence[int]) -> Tuple[str, List[int]]:
    """'p3d199:4' -> ('p3d199', [4]); 'p3d' -> ('p3d', default_bs)."""
    name, _, bs = spec.partition(":")
    if bs:
        try:
            return name, [int(b) for b in bs.split(",")]
        except ValueError:
            raise SystemExit(f"p3d-bench: --models entry {spec!r}: batch sizes after ':' must be "
                             f"integers, e.g. p3d199:4")
    return name, list(default_bs)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, clip_shape: Sequence[int], batch_size: int = 2,
                        seed: int = 0) -> nn.Module:
    """Set BN running statistics from one train-mode pass over random clips (in place).

    A freshly initialised network in eval mode uses mean 0 / var 1, so activations grow
    with depth (P3D-199 logits reach ~1e7 and overflow fp16). Calibrated statistics make
    the benchmark's activations, and its fast-path agreement check, look like a trained
    network's. Returns the model in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    model.train()
    g = torch.Generator().manual_seed(seed)
    model(torch.randn((batch_size, *clip_shape), generator=g).to(_model_device(model)))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def _build_model(name: str, num_classes: int, width_mult: Optional[float]) -> nn.Module:
    from p3d_lightning.models import create_model

    kw: Dict[str, Any] = {"num_classes": num_classes}
    if width_mult is not None:
        kw["width_mult"] = width_mult
    return create_model(name, **kw).eval()


def _malloc_reexec(mode: str, argv: Sequence[str]) -> None:
    """Re-exec the process with GLIBC_TUNABLES set (glibc reads it only at start-up)."""
    if mode != "tuned" or os.environ.get("GLIBC_TUNABLES") or sys.platform != "linux":
        return
    if os.environ.get("P3D_BENCH_REEXEC"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLE, P3D_BENCH_REEXEC="1")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "p3d_lightning.benchmark", *argv], env)


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{nd}f}"
    return str(v)


def _print_table(rows: List[Dict[str, Any]], cols: List[Tuple[str, str, int]], title: str) -> str:
    head = [c[1] for c in cols]
    body = [[_fmt(r.get(c[0]), c[2]) for c in cols] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [title, "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(b[i].ljust(widths[i]) for i in range(len(cols))) + " |" for b in body]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def run_inference_benchmark(models: Sequence[Tuple[str, List[int]]], clip_shape: Sequence[int],
                            settings: Sequence[str], *, num_classes: int = 101,
                            width_mult: Optional[float] = None, warmup: int = 3,
                            repeats: int = 10, rounds: int = 2,
                            device: str | torch.device = "cpu",
                            ceiling: Optional[Dict[str, Any]] = None,
                            check_outputs: bool = True, log: Callable[[str], None] = print
                            ) -> List[Dict[str, Any]]:
    """Measure every setting of every (model, batch size) side by side in one process.

    Each setting is measured ``rounds`` times, interleaved (plain, fast, plain, fast, ...),
    so that load changes on a shared machine hit all settings alike; clips/s is the median
    over all timed batches. Speed-ups are relative to the plain ``fp32`` setting of the same
    model and batch size. With ``check_outputs`` the fast-path logits are compared with the
    plain model's on the benchmark batch (top-1 agreement, max |diff|).
    """
    from p3d_lightning.models.fastpath import compare_outputs, optimize_for_inference

    device = torch.device(device)
    rows: List[Dict[str, Any]] = []
    for name, batch_sizes in models:
        base = _build_model(name, num_classes, width_mult).to(device)
        stats = model_stats(base, clip_shape)
        calibrate_batchnorm(base, clip_shape)
        log(f"[p3d-bench] {name}: {stats['params']:,} params, {stats['gmacs']:.2f} GMACs/clip "
            f"at {'x'.join(map(str, clip_shape))}")
        nets: Dict[str, nn.Module] = {}
        for s in settings:
            kw = INFERENCE_SETTINGS[s]
            if kw is None:
                nets[s] = base
                continue
            t0 = time.perf_counter()
            nets[s] = optimize_for_inference(base, device=device, **kw)
            build_s = time.perf_counter() - t0
            log(f"[p3d-bench]   built {s} in {build_s:.1f}s")
        for bs in batch_sizes:
            results: Dict[str, List[Dict[str, Any]]] = {s: [] for s in settings}
            for r in range(max(1, rounds)):
                for s in settings:
                    res = measure_inference_speed(
                        nets[s], clip_shape, bs, warmup=warmup if r == 0 else 1,
                        repeats=repeats, device=device, setting_name=s,
                        measure_memory=(r == 0))
                    results[s].append(res)
                    log(f"[p3d-bench]   {name} bs={bs} round {r + 1} {s}: "
                        f"{res['clips_per_s']:.2f} clips/s")
            plain_cps = None
            for s in settings:
                times = [t for res in results[s] for t in res["batch_times_s"]]
                first = results[s][0]
                row = dict(first)
                row.update(_timing_stats(times, bs, clip_shape[1] if len(clip_shape) == 4 else 1))
                row.pop("batch_times_s", None)
                row.update({"model": name, "params": stats["params"], "gmacs_per_clip": stats["gmacs"],
                            "rounds": len(results[s]),
                            "clips_per_s_per_round": [res["clips_per_s"] for res in results[s]]})
                row["achieved_gflops"] = row["clips_per_s"] * 2 * stats["gmacs"]
                if s == "fp32":
                    plain_cps = row["clips_per_s"]
                row["speedup_vs_fp32"] = (row["clips_per_s"] / plain_cps) if plain_cps else None
                if ceiling:
                    prec = row["precision"].split("-")[0]
                    peak = ceiling.get(f"{prec}_peak_gflops") or ceiling.get("fp32_peak_gflops")
                    row["ceiling_gflops"] = peak
                    row["fraction_of_ceiling"] = row["achieved_gflops"] / peak if peak else None
                    if peak:
                        row["ceiling_clips_per_s"] = peak / (2 * stats["gmacs"])
                if check_outputs and s != "fp32" and "fp32" in nets:
                    g = torch.Generator().manual_seed(1)
                    xs = torch.randn((min(bs, 4), *clip_shape), generator=g).to(device)
                    with torch.inference_mode():
                        cmp = compare_outputs(nets["fp32"], nets[s], xs)
                    row["top1_agreement_vs_fp32"] = cmp["top1_agreement"]
                    row["max_abs_logit_diff_vs_fp32"] = cmp["max_abs_diff"]
                    row["max_rel_logit_diff_vs_fp32"] = cmp["max_rel_diff"]
                    row["nonfinite_outputs"] = cmp["num_nonfinite"]
                rows.append(row)
        del nets, base
        gc.collect()
    return rows


def compare_fast_path(model: nn.Module, loader: Iterable[Dict[str, Any]], *,
                      device: str | torch.device = "cpu", max_batches: Optional[int] = None,
                      fast_kwargs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``model`` as plain fp32 NCDHW against its :func:`optimize_for_inference` copy, on the
    dict batches of ``loader`` (clips with ``valid`` False, i.e. failed to decode, skipped).

    Returns :func:`~p3d_lightning.models.fastpath.compare_outputs`' keys (``num_clips``,
    ``top1_agreement``, ``max_abs_diff``, ``max_rel_diff``, ``within_bf16_tol`` ...) with the
    accuracies as ``clip_acc_fp32`` / ``clip_acc_fast``, plus the fast path's ``precision``
    and ``fused_ops``. The caller's model is not modified.
    """
    from p3d_lightning.models.fastpath import compare_outputs, optimize_for_inference

    device = torch.device(device)
    plain = copy.deepcopy(model).float().to(device).eval().to(memory_format=torch.contiguous_format)
    fast = optimize_for_inference(plain, device=device, **(fast_kwargs or {}))

    def batches():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                return
            keep = batch["valid"].bool() if "valid" in batch else torch.ones(len(batch["label"]), dtype=torch.bool)
            if keep.any():
                yield batch["clip"][keep].to(device), batch["label"][keep]

    res = compare_outputs(plain, fast, batches())
    res["clip_acc_fp32"] = res.pop("acc_reference")
    res["clip_acc_fast"] = res.pop("acc_candidate")
    res.update(precision=fast.precision, fused_ops=fast.fused_ops)
    return res


@torch.no_grad()
def check_fast_path_on_data(checkpoint: str | Path, config: str | Path, *, stage: str = "test",
                            overrides: Optional[Dict[str, Any]] = None,
                            max_batches: Optional[int] = None,
                            fast_kwargs: Optional[Dict[str, Any]] = None,
                            device: str | torch.device = "cpu",
                            log: Callable[[str], None] = print) -> Dict[str, Any]:
    """The fast path against the plain fp32 model of a trained checkpoint, on real clips.

    Loads the ``P3DClassifier`` in ``checkpoint`` and the data of the experiment YAML
    ``config`` (``overrides``: dotted keys, e.g. ``{"data.root": "/data/ucf101"}``), runs every
    clip of the ``stage`` loader (``"test"`` or ``"val"``) through the plain fp32 NCDHW model
    and through :func:`optimize_for_inference` (``fast_kwargs``) with :func:`compare_fast_path`,
    and returns its keys plus the checkpoint, config, stage, arch and device.
    """
    from p3d_lightning.experiment import instantiate_from_config
    from p3d_lightning.module import P3DClassifier

    checkpoint, config = Path(checkpoint), Path(config)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if not config.is_file():
        raise FileNotFoundError(f"experiment config not found: {config}")
    if stage not in ("test", "val"):
        raise ValueError(f"stage must be 'test' or 'val', got {stage!r}")
    _, datamodule, _ = instantiate_from_config(str(config), overrides=overrides)
    from p3d_lightning.models.weights import load_module_checkpoint

    # weights_only=True; an unreadable or hostile file gives an error that names it
    module = load_module_checkpoint(P3DClassifier, checkpoint, map_location="cpu")
    device = torch.device(device)
    datamodule.prepare_data()
    datamodule.setup("validate" if stage == "val" else "test")
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    try:
        cmp = compare_fast_path(module.model, loader, device=device, max_batches=max_batches,
                                fast_kwargs=fast_kwargs)
    except ValueError as err:  # compare_outputs: no clips
        raise ValueError(f"{config}: the {stage} loader gave no decodable clip") from err
    res = {"checkpoint": str(checkpoint), "config": str(config), "stage": stage,
           "arch": module.hparams.get("arch", ""), **cmp,
           "device": str(device), "device_name": device_name(device)}
    total, max_abs = res["num_clips"], res["max_abs_diff"]
    log(f"[p3d-bench] {checkpoint}: {total} {stage} clips, top-1 agreement "
        f"{100 * res['top1_agreement']:.2f}%, max |dlogit| {max_abs:.4f} "
        f"({100 * res['max_rel_diff']:.2f}% of max |logit|), clip acc fp32 "
        f"{100 * res['clip_acc_fp32']:.2f}% vs fast ({res['precision']}) {100 * res['clip_acc_fast']:.2f}%")
    return res


def _write_outputs(out_dir: Path, stem: str, rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> Tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{stem}.csv"
    json_path = out_dir / f"{stem}.json"
    keys: List[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    tmp.replace(csv_path)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    tmp.replace(json_path)
    return csv_path, json_path


INFER_COLS = [("model", "model", 0), ("batch_size", "bs", 0), ("setting", "setting", 0),
              ("precision", "precision", 0), ("fused_ops", "fused", 0), ("clips_per_s", "clips/s", 2),
              ("frames_per_s", "frames/s", 1), ("speedup_vs_fp32", "x fp32", 2),
              ("achieved_gflops", "GFLOP/s", 0), ("fraction_of_ceiling", "of ceiling", 2),
              ("batch_time_ms_median", "ms/batch", 0), ("peak_mem_mb", "peak MB", 0),
              ("minor_faults_per_batch", "faults/batch", 0), ("top1_agreement_vs_fp32", "top1 agree", 2)]
TRAIN_COLS = [("model", "model", 0), ("batch_size", "bs", 0), ("setting", "setting", 0),
              ("precision", "precision", 0), ("channels_last", "CL", 0),
              ("clips_per_s", "clips/s", 2), ("speedup_vs_fp32", "x fp32", 2),
              ("achieved_gflops", "GFLOP/s", 0), ("fraction_of_ceiling", "of ceiling", 2),
              ("batch_time_ms_median", "ms/step", 0), ("peak_mem_mb", "peak MB", 0),
              ("peak_mem_mb_per_clip", "MB/clip", 0), ("loss_first", "loss0", 3),
              ("loss_last", "lossN", 3)]
DATA_COLS = [("num_workers", "workers", 0), ("batch_size", "bs", 0), ("clips_per_s", "clips/s", 1),
             ("clips_per_s_per_worker", "clips/s/worker", 1)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p3d-bench",
        description="Measure P3D inference (default), training (--train) or input-pipeline "
                    "(--data) speed against the plain fp32 path and the machine's ceiling; "
                    "prints a table and writes CSV + JSON.")
    p.add_argument("--models", nargs="+", default=["p3d"],
                   help="model names (create_model); append ':BS[,BS]' for per-model batch sizes, "
                        "e.g. p3d:8 p3d199:4 (default: p3d)")
    p.add_argument("--clip-shape", type=_parse_shape, default=None,
                   help="TxHxW or CxTxHxW (default 16x160x160; 1x224x224 for resnet50 if it is "
                        "the only model)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    p.add_argument("--num-classes", type=int, default=101)
    p.add_argument("--width-mult", type=float, default=None)
    p.add_argument("--settings", nargs="+", default=None, choices=sorted(INFERENCE_SETTINGS),
                   help=f"inference settings (default CPU: {' '.join(DEFAULT_CPU_SETTINGS)}; "
                        f"GPU: {' '.join(DEFAULT_GPU_SETTINGS)})")
    p.add_argument("--compile", action="store_true", help="also measure fast_compile")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved measurement rounds per setting (default 2)")
    p.add_argument("--device", default=None, help="cpu or cuda[:i] (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-ceiling", action="store_true", help="skip the matmul/conv ceiling")
    p.add_argument("--malloc", choices=["default", "tuned"], default="default",
                   help="'tuned': re-exec with GLIBC_TUNABLES raising the malloc mmap/trim "
                        "threshold (large activations reused instead of page-faulted each call)")
    p.add_argument("--out-dir", default="bench_results")
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: p3d_tiny, 3x16x32x32, batch 2, 1 repeat, 1 round, small ceiling")
    g = p.add_argument_group("training (--train)")
    g.add_argument("--train", action="store_true", help="measure training clips/s instead")
    g.add_argument("--train-clip-shape", type=_parse_shape, default=None,
                   help="default 16x80x80 (the synthetic-ablation configuration, "
                        "experiments/synthetic/p3d.yaml; with --width-mult defaulting to 0.125)")
    g.add_argument("--train-batch-size", type=int, default=16)
    g.add_argument("--train-steps", type=int, default=5)
    g.add_argument("--train-settings", nargs="+", default=["fp32", "fast"],
                   help="fp32, fp32_cl, bf16-mixed, bf16-mixed_cl, 16-mixed_cl, fast (the "
                        "training fast path: the machine's default precision + channels_last_3d, "
                        "what `p3d fit` uses), and any of them + '_ckpt' (activation checkpointing)")
    g = p.add_argument_group("numerics of a trained checkpoint (--check)")
    g.add_argument("--check", metavar="CKPT", default=None,
                   help="compare the fast path with plain fp32 on the test clips of a trained "
                        "checkpoint (top-1 agreement, logit difference, accuracy of each)")
    g.add_argument("--config", default=None, help="the checkpoint's experiment YAML (for --check)")
    g.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="dotted config overrides for --check, e.g. data.root=/data/ucf101")
    g.add_argument("--stage", default="test", choices=["test", "val"])
    g.add_argument("--max-batches", type=int, default=None)
    g = p.add_argument_group("input pipeline (--data)")
    g.add_argument("--data", action="store_true", help="measure the input pipeline instead")
    g.add_argument("--data-root", default=None,
                   help="dataset root (default: a synthetic set under <out-dir>/synthetic_data)")
    g.add_argument("--dataset", default="synthetic")
    g.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--data-batches", type=int, default=10)
    g.add_argument("--synthetic-size", type=lambda t: tuple(int(v) for v in t.split("x")),
                   default=(240, 320), help="HxW of generated synthetic videos (default 240x320, "
                                            "the UCF101 frame size)")
    g.add_argument("--synthetic-videos-per-class", type=int, default=8)
    g.add_argument("--target-clips-per-s", type=float, nargs="*", default=None,
                   help="model rates to feed (default: the training rates of the last --train "
                        "run's JSON in --out-dir if present)")
    return p


def _train_setting(spec: str, device: str | torch.device = "cpu") -> Dict[str, Any]:
    """Parse a --train-settings entry; a precision this device cannot run exits with a clear message."""
    from p3d_lightning.precision import PrecisionUnsupportedError, check_training_precision

    ckpt = spec.endswith("_ckpt")
    base = spec[:-5] if ckpt else spec
    if base == "fast":
        prec = check_training_precision("auto", torch.device(device).type)
        prec = "fp32" if prec == "32-true" else prec
        return {"precision": prec, "channels_last": True, "checkpoint": ckpt}
    cl = base.endswith("_cl")
    prec = base[:-3] if cl else base
    if prec not in ("fp32", "bf16-mixed", "16-mixed"):
        raise SystemExit(f"p3d-bench: --train-settings entry {spec!r}: expected fp32 | bf16-mixed | "
                         f"16-mixed, optionally + '_cl' and/or '_ckpt', or fast")
    try:
        check_training_precision(prec, torch.device(device).type, option=f"--train-settings {spec}")
    except PrecisionUnsupportedError as err:
        raise SystemExit(f"p3d-bench: {err}") from None
    return {"precision": prec, "channels_last": cl, "checkpoint": ckpt}


def _check_inference_settings(settings: Sequence[str], device: torch.device) -> None:
    """Exit with one clear message if a setting names a dtype this device cannot run."""
    from p3d_lightning.precision import PrecisionUnsupportedError, resolve_inference_dtype

    for s in settings:
        kw = INFERENCE_SETTINGS.get(s) or {}
        if "dtype" in kw:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resolve_inference_dtype(kw["dtype"], device, what=f"p3d-bench --settings {s}")
            except PrecisionUnsupportedError as err:
                raise SystemExit(f"p3d-bench: {err}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``p3d-bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.malloc == "tuned" and not args.quick:
        _malloc_reexec("tuned", argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # a precision this machine cannot run is an error now, not after the ceiling measurement
    if args.train:
        for spec in args.train_settings:
            _train_setting(spec, device)
    elif args.settings:
        _check_inference_settings(args.settings, device)
    if args.quick:
        if args.models == ["p3d"]:
            args.models = ["p3d_tiny"]
        args.clip_shape = args.clip_shape or (3, 16, 32, 32)
        args.batch_sizes = [2]
        args.repeats, args.warmup, args.rounds = 1, 1, 1
        args.train_clip_shape = args.train_clip_shape or (3, 16, 32, 32)
        args.train_batch_size, args.train_steps = 2, 1
        args.workers, args.data_batches = [0], 2
        if args.width_mult is None and any(m.split(":")[0] != "p3d_tiny" for m in args.models):
            args.width_mult = 0.25
    out_dir = Path(args.out_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    mode = "train" if args.train else "data" if args.data else "check" if args.check else "infer"
    stem = f"bench_{mode}_{stamp}{('_' + args.tag) if args.tag else ''}"
    meta: Dict[str, Any] = {"argv": argv, "mode": mode, "time": stamp,
                            "load_average_start": load_average(), **environment_info(device)}
    print(f"[p3d-bench] {meta['device_name']} | torch {torch.__version__} | "
          f"{torch.get_num_threads()} threads | GLIBC_TUNABLES={meta['glibc_tunables'] or '-'} | "
          f"load {meta['load_average_start']}", flush=True)

    if args.check:
        from p3d_lightning.experiment import parse_overrides

        parser = build_parser()
        if not args.config:
            parser.error("--check needs --config (the checkpoint's experiment YAML)")
        try:
            overrides = parse_overrides(args.overrides)
        except ValueError as err:
            parser.error(str(err))
        row = check_fast_path_on_data(args.check, args.config, stage=args.stage,
                                      overrides=overrides or None, max_batches=args.max_batches,
                                      device=device)
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, [row], meta)
        print(f"[p3d-bench] wrote {csv_path} and {json_path}", flush=True)
        return 0

    if args.data:
        rows = _run_data(args, out_dir)
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, DATA_COLS, "\nInput pipeline (decode + sample + transform)")
        if args.target_clips_per_s is None:
            targets = _last_train_rates(out_dir)
        else:
            targets = [("a model", t) for t in args.target_clips_per_s]
        for label, rate in targets:
            n = workers_needed(rate, rows)
            note = " (loading in the main process keeps up)" if n == 0 else ""
            print(f"[p3d-bench] to feed {label} at {rate:.1f} clips/s: ~{n} worker(s){note}; decoding "
                  f"costs ~{rate / max(r['clips_per_s_per_worker'] for r in rows):.2f} core(s) at that "
                  f"rate", flush=True)
            meta.setdefault("workers_needed", {})[label] = n
        _write_outputs(out_dir, stem, rows, meta)
        print(f"[p3d-bench] wrote {csv_path} and {json_path}")
        return 0

    if not args.no_ceiling:
        meta["ceiling"] = measure_ceiling(device, quick=args.quick, repeats=2 if args.quick else 5)
        c = meta["ceiling"]
        print("[p3d-bench] ceiling GFLOP/s: " + ", ".join(
            f"{k[:-7]}={v:.0f}" for k, v in c.items() if k.endswith("_gflops")), flush=True)

    if args.train:
        rows = _run_train(args, device, meta.get("ceiling"))
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, TRAIN_COLS, "\nTraining (forward + backward + SGD step)")
    else:
        models = [_parse_model_spec(m, args.batch_sizes) for m in args.models]
        shape = args.clip_shape or ((3, 1, 224, 224) if all(n == "resnet50" for n, _ in models)
                                    else (3, 16, 160, 160))
        settings = list(args.settings or (DEFAULT_GPU_SETTINGS if device.type == "cuda"
                                          else DEFAULT_CPU_SETTINGS))
        if device.type == "cpu" and args.settings is None:
            from p3d_lightning.precision import bf16_supported
            if not bf16_supported("cpu"):  # no native bf16: the fp32 ladder up to the fast path
                settings = list(DEFAULT_CPU_SETTINGS_NO_BF16)
        _check_inference_settings(settings, device)
        if args.compile and "fast_compile" not in settings:
            settings.append("fast_compile")
        if "fp32" not in settings:
            settings.insert(0, "fp32")
        rows = run_inference_benchmark(
            models, shape, settings, num_classes=args.num_classes, width_mult=args.width_mult,
            warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, device=device,
            ceiling=meta.get("ceiling"))
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, INFER_COLS, f"\nInference, clip {'x'.join(map(str, shape))}")
    print(f"[p3d-bench] load average start {meta['load_average_start']} end {meta['load_average_end']}")
    print(f"[p3d-bench] wrote {csv_path} and {json_path}", flush=True)
    return 0


#: The synthetic-ablation training configuration (experiments/synthetic/p3d.yaml).
SYNTHETIC_TRAIN_CFG = {"width_mult": 0.125, "clip_shape": (3, 16, 80, 80), "batch_size": 16}


def _run_train(args: argparse.Namespace, device: torch.device,
               ceiling: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    shape = args.train_clip_shape or SYNTHETIC_TRAIN_CFG["clip_shape"]
    if args.width_mult is None and args.train_clip_shape is None:
        args.width_mult = SYNTHETIC_TRAIN_CFG["width_mult"]
    rows: List[Dict[str, Any]] = []
    specs = [_train_setting(s, device) for s in args.train_settings]
    for spec_text in args.models:
        name, _ = _parse_model_spec(spec_text, [args.train_batch_size])
        base = _build_model(name, args.num_classes, args.width_mult).to(device)
        stats = model_stats(base, shape)
        plain = None
        per_setting: Dict[str, List[Dict[str, Any]]] = {s: [] for s in args.train_settings}
        for r in range(max(1, args.rounds)):
            for text, spec in zip(args.train_settings, specs):
                net = base
                if spec["checkpoint"]:
                    net = copy.deepcopy(base)
                    enable_activation_checkpointing(net)
                res = measure_training_speed(
                    net, shape, args.train_batch_size, num_classes=args.num_classes,
                    precision=spec["precision"], channels_last=spec["channels_last"],
                    steps=args.train_steps, warmup=1 if args.quick else 2, device=device,
                    setting_name=text)
                per_setting[text].append(res)
                print(f"[p3d-bench]   train {name} round {r + 1} {text}: {res['clips_per_s']:.2f} clips/s",
                      flush=True)
        for text in args.train_settings:
            res_list = per_setting[text]
            times = [t for res in res_list for t in res["batch_times_s"]]
            row = dict(res_list[0])
            row.pop("batch_times_s", None)
            row.update(_timing_stats(times, args.train_batch_size, shape[1] if len(shape) == 4 else 1))
            row.update({"model": name, "params": stats["params"], "gmacs_per_clip": stats["gmacs"],
                        "loss_last": res_list[-1]["loss_last"],
                        "clips_per_s_per_round": [x["clips_per_s"] for x in res_list]})
            if text == "fp32":
                plain = row["clips_per_s"]
            row["speedup_vs_fp32"] = row["clips_per_s"] / plain if plain else None
            # forward + backward ~ 3x the forward FLOPs (the weight and input gradients)
            row["achieved_gflops"] = row["clips_per_s"] * 3 * 2 * stats["gmacs"]
            if ceiling:
                prec = "bf16" if str(row.get("precision", "")).startswith("bf16") else "fp32"
                peak = ceiling.get(f"{prec}_peak_gflops") or ceiling.get("fp32_peak_gflops")
                row["ceiling_gflops"] = peak
                row["fraction_of_ceiling"] = row["achieved_gflops"] / peak if peak else None
            rows.append(row)
    return rows


def _run_data(args: argparse.Namespace, out_dir: Path) -> List[Dict[str, Any]]:
    root = Path(args.data_root) if args.data_root else out_dir / "synthetic_data"
    shape = args.clip_shape or (3, 16, 160, 160)
    extra: Dict[str, Any] = {}
    num_classes: Optional[int] = args.num_classes
    if args.dataset == "synthetic":
        num_classes = None
        extra = dict(synthetic_size=tuple(args.synthetic_size),
                     synthetic_videos_per_class=args.synthetic_videos_per_class)
        if args.quick:
            extra.update(synthetic_num_pairs=1, synthetic_videos_per_class=8,
                         synthetic_size=(48, 64), synthetic_num_frames=20,
                         resize=(40, 48))
    rows = []
    for w in args.workers:
        res = measure_data_pipeline(root, num_workers=w, batch_size=args.batch_sizes[0],
                                    num_batches=args.data_batches, clip_len=shape[1],
                                    crop_size=shape[2], dataset=args.dataset,
                                    num_classes=num_classes, **extra)
        res["clips_per_s_per_worker"] = res["clips_per_s"] / max(w, 1)
        print(f"[p3d-bench]   data workers={w}: {res['clips_per_s']:.1f} clips/s", flush=True)
        rows.append(res)
    return rows


def _last_train_rates(out_dir: Path) -> List[Tuple[str, float]]:
    files = sorted(out_dir.glob("bench_train_*.json"))
    if not files:
        return []
    data = json.loads(files[-1].read_text())
    return [(f"{r['model']} {r['setting']} training", float(r["clips_per_s"])) for r in data["rows"]]


if __name__ == "__main__":
    sys.exit(main())
