"""What a speed number was measured on: device names, library versions, load, peak memory, malloc.

Every measurement records :func:`environment_info` beside it, because a clips/s figure means
nothing without the CPU (or GPU), the thread count and the libraries; on a shared machine the
:func:`load_average` at start and end says how much the neighbours took.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import re
import resource
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from p3d_lightning.precision import cpu_capabilities

__all__ = ["MALLOC_TUNABLE", "PeakMemory", "cpu_isa", "cpu_model_name", "device_name",
           "environment_info", "load_average", "malloc_reexec", "minor_faults"]

# glibc malloc: serve large activation buffers from the heap (no mmap) and never trim it, so
# that they are reused instead of being mmap'd and page-faulted again on every forward pass
# (P3D-50 fp32 batch 8: ~880k minor faults = 3.4 GB of fresh pages per batch by default, 0 with
# this). glibc caps mmap_threshold at 32 MiB (larger values are silently ignored), which is
# why mmap_max=0 is used rather than a big mmap_threshold.
MALLOC_TUNABLE = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


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
    return f"{cpu_model_name()} ({os.cpu_count()} cores, {cpu_capabilities().describe()})"


def cpu_isa() -> str:
    """The CPU's ISA label for tables: 'AVX2', 'AVX-512', 'AVX-512 + AVX512_BF16', '... + AMX'."""
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


def minor_faults() -> int:
    """Minor page faults of this process so far (fresh memory pages touched; see MALLOC_TUNABLE)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def malloc_reexec(argv: Sequence[str], module: str) -> None:
    """Re-run ``python -m module argv`` with :data:`MALLOC_TUNABLE` in ``GLIBC_TUNABLES``.

    glibc reads its tunables only at start-up, so a process that wants them must start again.
    Nothing happens off Linux, when ``GLIBC_TUNABLES`` is already set, or in the re-run itself.
    """
    if os.environ.get("GLIBC_TUNABLES") or sys.platform != "linux":
        return
    if os.environ.get("P3D_BENCH_REEXEC"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLE, P3D_BENCH_REEXEC="1")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


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
