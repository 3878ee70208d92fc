"""One vocabulary from a precision name to what runs on this machine.

Machines of the same kind differ: some x86-64 CPUs have AVX-512 with native bf16
(AVX512_BF16, AMX), others AVX2 only, where oneDNN refuses bf16 convolutions outright
("bf16 path needs the cpu support avx_ne_convert or avx512bw, avx512vl and avx512dq").
Whether a dtype *runs* is therefore decided by running it: :func:`cpu_capabilities` executes
a tiny probe of the kernels the project uses (a channels_last_3d convolution, the fused
conv + add + ReLU op of :mod:`p3d_lightning.models.fusion`, and an autocast forward and
backward) once per process and caches the answer. Whether it is *fast* (native) is read from
the CPU flags, restricted by ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` when those cap
the kernels below AVX512_BF16.

Names, from a config or the command line, to what runs:

========================  =======================  =====================================
name                      training (Lightning)      inference dtype
========================  =======================  =====================================
``auto``                  :func:`default_precision`  bf16 where native, fp16 on an older
                                                    GPU, else fp32
``fp32`` / ``32-true``    ``32-true``               fp32
``bf16`` / ``bf16-mixed`` ``bf16-mixed``            bf16
``fp16`` / ``16-mixed``   ``16-mixed``              fp16
========================  =======================  =====================================

An explicit request the device cannot run raises :class:`PrecisionUnsupportedError`, which
names the missing CPU features and the setting to use instead; ``auto`` never picks one.

``P3D_CPU_BF16=0`` (environment) makes the probe report that bf16 does not run, so the
"no bf16" branch of every caller can be tried on any machine (tests use it, and
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` restricts the kernels as well).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

log = logging.getLogger(__name__)

__all__ = [
    "CpuCapabilities", "PrecisionUnsupportedError", "cpu_capabilities", "bf16_supported",
    "bf16_runs", "default_precision", "resolve_inference_dtype", "training_precision",
    "check_training_precision", "dtype_name", "DTYPES",
]

DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "32": torch.float32, "32-true": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
    "bf16-true": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "16": torch.float16,
    "16-mixed": torch.float16, "16-true": torch.float16,
}
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which bf16 is emulated, not native.
_ONEDNN_BELOW_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                      "AVX512_CORE_VNNI"}


class PrecisionUnsupportedError(RuntimeError):
    """A precision was asked for explicitly that this device cannot run."""


def dtype_name(dtype: torch.dtype) -> str:
    """Short name ('fp32', 'bf16', 'fp16') of a torch floating dtype."""
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


@dataclass(frozen=True)
class CpuCapabilities:
    """What this CPU runs, probed once per process (see :func:`cpu_capabilities`).

    Attributes:
        isa: the kernels ATen dispatches to (``torch.backends.cpu.get_cpu_capability()``:
            ``AVX2``, ``AVX512``, ...), after any ``ATEN_CPU_CAPABILITY`` cap.
        flags: the CPU flags that matter here (avx2, avx512f, avx512_bf16, amx_bf16, ...).
        bf16_runs: bf16 convolutions (plain, fused, autocast fwd+bwd) ran in the probe.
        bf16_native: bf16 runs *and* the CPU computes it natively (AVX512_BF16 or AMX, not
            capped by ``ONEDNN_MAX_CPU_ISA``): only then is bf16 faster than fp32.
        fp16_runs: fp16 convolutions ran in the probe.
        bf16_error: the kernel's refusal message when bf16 does not run.
    """

    isa: str
    flags: Tuple[str, ...]
    bf16_runs: bool
    bf16_native: bool
    fp16_runs: bool
    bf16_error: str = ""
    forced: bool = field(default=False, compare=False)

    @property
    def isa_label(self) -> str:
        """'AVX2', 'AVX-512', 'AVX-512 + AVX512_BF16' or '... + AMX' (for tables)."""
        f = set(self.flags)
        capped = self.isa.upper().startswith("AVX2") or os.environ.get(
            "ONEDNN_MAX_CPU_ISA", "").upper() in {"AVX2", "AVX", "SSE41", "AVX2_VNNI"}
        if capped or "avx512f" not in f:
            label = "AVX2" if ("avx2" in f or self.isa.upper().startswith("AVX2")) else self.isa
            if capped and "avx512f" in f:
                label += " (capped)"
            return label
        label = "AVX-512"
        if "avx512_bf16" in f:
            label += " + AVX512_BF16"
        if "amx_bf16" in f:
            label += " + AMX"
        return label

    def describe(self) -> str:
        """One line for logs and benchmark headers."""
        bf16 = "bf16 native" if self.bf16_native else ("bf16 emulated" if self.bf16_runs else "no bf16")
        return f"{self.isa_label}, {bf16}" + (" (forced off by P3D_CPU_BF16=0)" if self.forced else "")

    def missing_for_bf16(self) -> str:
        """The CPU features bf16 would need, as a phrase for error messages."""
        have = set(self.flags)
        need = [f for f in ("avx512bw", "avx512vl", "avx512dq", "avx512_bf16") if f not in have]
        if self.forced:
            return "bf16 switched off by P3D_CPU_BF16=0"
        return ("missing " + ", ".join(need)) if need else (self.bf16_error or "kernel refused")


def _cpu_flags() -> Tuple[str, ...]:
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "avx_ne_convert")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return tuple(w for w in wanted if w in have)
    except OSError:  # pragma: no cover - not Linux
        pass
    out = []
    cpu = getattr(torch, "cpu", None)
    with contextlib.suppress(Exception):
        if cpu._is_avx512_bf16_supported():
            out.append("avx512_bf16")
    with contextlib.suppress(Exception):
        if cpu._is_amx_tile_supported():
            out.append("amx_bf16")
    return tuple(out)


def _probe_dtype(dtype: torch.dtype) -> str:
    """Run the project's conv kernels in ``dtype`` on tiny inputs; '' if all ran, else the error."""
    cl = torch.channels_last_3d
    try:
        with torch.no_grad():
            x = torch.randn(1, 8, 2, 6, 6).to(dtype).contiguous(memory_format=cl)
            w = torch.randn(8, 8, 1, 3, 3).to(dtype).contiguous(memory_format=cl)
            torch.nn.functional.conv3d(x, w, None, 1, (0, 1, 1))
            if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
                torch.ops.mkldnn._convolution_pointwise(x, w, None, [0, 1, 1], [1, 1, 1], [1, 1, 1], 1,
                                                        "relu", [], "")
                torch.ops.mkldnn._convolution_pointwise.binary(
                    x, x, w, None, [0, 1, 1], [1, 1, 1], [1, 1, 1], 1, "add", None, "relu", [], "")
        conv = torch.nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0)).to(memory_format=cl)
        xf = torch.randn(2, 8, 2, 4, 4, requires_grad=True).contiguous(memory_format=cl)
        with torch.autocast("cpu", dtype=dtype):
            y = conv(xf)
        y.float().sum().backward()
    except (RuntimeError, NotImplementedError, TypeError) as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ""


@functools.lru_cache(maxsize=None)
def cpu_capabilities() -> CpuCapabilities:
    """Probe (once per process) what this CPU runs; see :class:`CpuCapabilities`."""
    isa = "unknown"
    with contextlib.suppress(Exception):
        isa = torch.backends.cpu.get_cpu_capability()
    flags = _cpu_flags()
    forced = os.environ.get("P3D_CPU_BF16", "").strip().lower() in ("0", "false", "no", "off")
    if forced:
        bf16_error = "bf16 switched off by P3D_CPU_BF16=0"
    else:
        bf16_error = _probe_dtype(torch.bfloat16)
    bf16_runs = not bf16_error
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    native_flags = "avx512_bf16" in flags or "amx_bf16" in flags
    bf16_native = bool(bf16_runs and native_flags and onednn_cap not in _ONEDNN_BELOW_BF16
                       and not isa.upper().startswith("AVX2") and isa.upper() != "DEFAULT")
    fp16_runs = not _probe_dtype(torch.float16)
    caps = CpuCapabilities(isa=isa, flags=flags, bf16_runs=bf16_runs, bf16_native=bf16_native,
                           fp16_runs=fp16_runs, bf16_error=bf16_error, forced=forced)
    log.debug("CPU capabilities: %s", caps)
    return caps


def _is_cuda(device: Optional[str | torch.device]) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def bf16_runs(device: Optional[str | torch.device] = None) -> bool:
    """Whether bf16 kernels run at all on ``device`` (CPU: probed; maybe emulated and slow)."""
    if _is_cuda(device):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_capabilities().bf16_runs


def bf16_supported(device: Optional[str | torch.device] = None) -> bool:
    """Whether bf16 runs *natively* on ``device`` (default: CUDA if available, else CPU).

    CPU: the probe ran and the CPU has AVX512_BF16 or AMX (without them oneDNN either refuses
    bf16 or emulates it, slower than fp32). CUDA: ``torch.cuda.is_bf16_supported()``.
    """
    if _is_cuda(device):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_capabilities().bf16_native


def default_precision(device: Optional[str | torch.device] = None) -> str:
    """The Lightning training precision used when a config does not set ``trainer.precision``.

    ``"bf16-mixed"`` where bf16 is native (see :func:`bf16_supported`), ``"16-mixed"`` on a GPU
    without bf16, ``"32-true"`` on a CPU without native bf16.
    """
    dev = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if bf16_supported(dev):
        return "bf16-mixed"
    return "16-mixed" if _is_cuda(dev) else "32-true"


def _unsupported(what: str, name: str, device: str, fallback: str) -> PrecisionUnsupportedError:
    caps = cpu_capabilities()
    return PrecisionUnsupportedError(
        f"{what}: {name!r} does not run on this {device} ({caps.describe()}; "
        f"{caps.missing_for_bf16() if 'bf16' in name or 'bfloat' in name else 'kernel refused'}). "
        f"Use {fallback!r} (or 'auto', which picks what this machine runs).")


def resolve_inference_dtype(dtype: str | torch.dtype = "auto",
                            device: str | torch.device = "cpu", *,
                            what: str = "optimize_for_inference") -> torch.dtype:
    """Map ``'auto'|'bf16'|'fp16'|'fp32'`` (or a torch dtype) to the compute dtype on ``device``.

    ``'auto'``: CUDA -> bf16 if supported else fp16; CPU -> bf16 where native, else fp32.
    An explicit bf16/fp16 that the CPU cannot run raises :class:`PrecisionUnsupportedError`
    (naming ``what``); one that runs but is emulated gives a warning that it is slower.
    """
    dev = torch.device(device)
    if isinstance(dtype, torch.dtype):
        dt = dtype
    else:
        key = str(dtype).lower()
        if key == "auto":
            if dev.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.bfloat16 if bf16_supported("cpu") else torch.float32
        if key not in DTYPES:
            raise ValueError(f"{what}: dtype must be one of 'auto', 'bf16', 'fp16', 'fp32' "
                             f"(or a torch dtype), got {dtype!r}")
        dt = DTYPES[key]
    if dev.type == "cpu":
        caps = cpu_capabilities()
        if dt == torch.bfloat16:
            if not caps.bf16_runs:
                raise _unsupported(what, "bf16", "CPU", "fp32")
            if not caps.bf16_native:
                warnings.warn(f"{what}: bf16 is emulated on this CPU ({caps.describe()}) and "
                              f"slower than fp32; 'auto' would pick fp32", stacklevel=3)
        elif dt == torch.float16 and not caps.fp16_runs:
            raise _unsupported(what, "fp16", "CPU", "fp32")
    return dt


_TRAINING_NAMES = {"fp32": "32-true", "32": "32-true", "32-true": "32-true",
                   "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "bf16-true": "bf16-true",
                   "fp16": "16-mixed", "16": "16-mixed", "16-mixed": "16-mixed", "16-true": "16-true",
                   "64": "64-true", "64-true": "64-true", "transformer-engine": "transformer-engine"}


def training_precision(name: str | int | None, device: Optional[str | torch.device] = None) -> str:
    """Lightning's precision string for a name (``auto`` -> :func:`default_precision`)."""
    if name is None or str(name).lower() == "auto":
        return default_precision(device)
    key = str(name).lower()
    if key not in _TRAINING_NAMES:
        raise ValueError(f"precision: expected auto, 32-true, bf16-mixed, 16-mixed (or fp32/bf16/fp16), "
                         f"got {name!r}")
    return _TRAINING_NAMES[key]


def check_training_precision(precision: str | int | None, accelerator: str | None = "auto", *,
                             option: str = "trainer.precision") -> str:
    """Resolve and check a training precision before anything is built.

    Returns Lightning's precision string. On a CPU run, a bf16/fp16 precision whose kernels do
    not run raises :class:`PrecisionUnsupportedError` naming ``option``, at config parse time
    rather than inside oneDNN at the first forward pass.
    """
    acc = str(accelerator or "auto").lower()
    on_cpu = acc == "cpu" or (acc == "auto" and not torch.cuda.is_available())
    prec = training_precision(precision, "cpu" if on_cpu else None)
    if on_cpu:
        caps = cpu_capabilities()
        if prec.startswith("bf16") and not caps.bf16_runs:
            raise PrecisionUnsupportedError(
                f"{option}={precision!r}: bf16 does not run on this CPU ({caps.describe()}; "
                f"{caps.missing_for_bf16()}). Set {option}=32-true (or leave it unset: the default "
                f"follows the machine).")
        if prec.startswith("16") and not caps.fp16_runs:
            raise PrecisionUnsupportedError(
                f"{option}={precision!r}: fp16 does not run on this CPU ({caps.describe()}). "
                f"Set {option}=32-true.")
    return prec
