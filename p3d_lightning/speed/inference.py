"""Inference speed: clips/s of a network on a fixed synthetic batch, per setting.

The one place that makes the copy a setting names (:func:`inference_model`: plain fp32, or an
:func:`~p3d_lightning.models.fastpath.optimize_for_inference` variant) and the one place that
times it (:func:`measure_inference_speed`). The ablation's trained-net column
(:class:`~p3d_lightning.speed.callbacks.InferenceSpeedCallback`), its paper-scale column
(:func:`paper_scale_speed`) and ``p3d-bench`` (:func:`run_inference_benchmark`) all go through
both.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from p3d_lightning.precision import dtype_name
from p3d_lightning.speed.ceiling import bench_row
from p3d_lightning.speed.config import ModelStats, SpeedConfig, SpeedResult
from p3d_lightning.speed.environment import PeakMemory, device_name
from p3d_lightning.speed.timing import model_device, time_calls

__all__ = ["INFERENCE_SETTINGS", "DEFAULT_CPU_SETTINGS", "DEFAULT_CPU_SETTINGS_NO_BF16",
           "DEFAULT_GPU_SETTINGS", "build_model", "calibrate_batchnorm", "inference_model",
           "measure_inference_speed", "paper_scale_speed", "run_inference_benchmark"]

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


def inference_model(model: nn.Module, setting: str = "fast",
                    device: str | torch.device | None = None) -> nn.Module:
    """The eval-only copy of ``model`` that ``setting`` (a key of :data:`INFERENCE_SETTINGS`) times.

    ``"fp32"`` is a plain fp32 NCDHW copy; every other setting is an
    :func:`~p3d_lightning.models.fastpath.optimize_for_inference` copy with that setting's
    options. ``model`` itself is not modified.
    """
    from p3d_lightning.models.fastpath import optimize_for_inference

    if setting not in INFERENCE_SETTINGS:
        raise ValueError(f"unknown inference setting {setting!r}; expected one of {sorted(INFERENCE_SETTINGS)}")
    device = torch.device(device) if device is not None else model_device(model)
    plain = copy.deepcopy(model).float().to(device).eval().to(memory_format=torch.contiguous_format)
    kwargs = INFERENCE_SETTINGS[setting]
    return plain if kwargs is None else optimize_for_inference(plain, device=device, **kwargs)


def _precision_of(model: nn.Module) -> str:
    prec = getattr(model, "precision", None)  # an InferenceModel says what it computes in
    if isinstance(prec, str):
        return prec
    p = next(iter(model.parameters()), None)
    return dtype_name(p.dtype) if p is not None else "fp32"


def measure_inference_speed(model: nn.Module, clip_shape: Sequence[int] = (3, 16, 160, 160),
                            batch_size: int = 8, *, warmup: int = 3, repeats: int = 10,
                            device: str | torch.device | None = None,
                            setting_name: str = "", measure_memory: bool = True,
                            input_dtype: torch.dtype = torch.float32,
                            max_seconds: Optional[float] = None) -> SpeedResult:
    """Inference throughput of ``model`` (as it is: no copy is made) on a fixed synthetic batch.

    One random fp32 batch ``(batch_size, *clip_shape)`` is made on the device up front (data
    loading excluded); ``warmup`` untimed passes, then ``repeats`` timed passes under
    ``torch.inference_mode()`` through :func:`~p3d_lightning.speed.timing.time_calls` (device
    synchronised; ``max_seconds`` bounds the timed part). ``model`` is put in eval mode, and
    moved to ``device`` if given (default: where its parameters are).

    Returns a :class:`SpeedResult`: clips/s (median over repeats), frames/s, batch times,
    ``peak_mem_mb`` (of one extra untimed pass: RSS delta on CPU, max allocated on CUDA),
    ``minor_faults_per_batch`` (fresh memory touched per pass; see ``--malloc``), the device,
    precision, channels_last / folded BN / fused ops of a fast-path model, batch, clip shape,
    threads and torch version.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"measure_inference_speed: need batch_size >= 1, repeats >= 1, "
                         f"warmup >= 0; got {batch_size}, {repeats}, {warmup}")
    clip_shape = tuple(int(s) for s in clip_shape)
    if len(clip_shape) not in (3, 4):
        raise ValueError(f"measure_inference_speed: clip_shape must be (C, T, H, W) or (C, H, W), "
                         f"got {clip_shape}")
    device = torch.device(device) if device is not None else model_device(model)
    if model_device(model) != device:
        model = model.to(device)
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((batch_size, *clip_shape), generator=gen, dtype=torch.float32)
    x = x.to(device=device, dtype=input_dtype)
    with torch.inference_mode():
        timing = time_calls(lambda i: model(x), device, warmup=warmup, repeats=repeats,
                            max_seconds=max_seconds)
        # memory: one extra untimed pass (PeakMemory trims the heap, which must not
        # disturb the timed passes)
        mem = PeakMemory(device) if measure_memory else contextlib.nullcontext()
        with mem:
            model(x)
    return SpeedResult(
        setting=setting_name, batch_times_s=timing.times, batch_size=batch_size, clip_shape=clip_shape,
        device=str(device), device_name=device_name(device), precision=_precision_of(model),
        channels_last=bool(getattr(model, "channels_last", False)), warmup=warmup,
        repeats=len(timing.times), peak_mem_mb=getattr(mem, "peak_mb", None),
        minor_faults_per_batch=timing.faults_per_call,
        folded_bn=int(getattr(model, "folded_bn", 0) or 0),
        # fused conv + ReLU / conv + add + ReLU calls and rewritten pools (CPU fast path)
        fused_ops=sum((getattr(model, "fused_ops", None) or {}).get(k, 0)
                      for k in ("conv_relu", "conv_add_relu", "max_pool")),
    )


def paper_scale_speed(arch: str, in_channels: int, config: SpeedConfig,
                      clip_len: Optional[int] = None) -> SpeedResult:
    """Inference speed of the full-size ``arch`` at the paper's input, on this machine.

    The network is :func:`~p3d_lightning.models.create_model`'s (101 classes, random weights:
    speed does not depend on them) at its ``MODEL_CFGS`` clip (the result's ``clip_shape``),
    or at ``clip_len`` frames when given (a clip-length ablation); ``config`` gives the
    setting, batch, warm-up, repeats and time budget.
    """
    from p3d_lightning.models import create_model, get_model_cfg

    cfg = get_model_cfg(arch)
    frames = int(clip_len or cfg.clip_len)
    shape = (in_channels, frames, cfg.crop_size, cfg.crop_size)
    net = inference_model(create_model(arch, num_classes=101, in_channels=in_channels), config.setting)
    return measure_inference_speed(
        net, clip_shape=shape, batch_size=config.paper_batch(frames), warmup=config.paper_warmup,
        repeats=config.repeats, setting_name=config.setting, measure_memory=False,
        max_seconds=config.paper_max_seconds)


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
    model(torch.randn((batch_size, *clip_shape), generator=g).to(model_device(model)))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def build_model(name: str, num_classes: int, width_mult: Optional[float] = None) -> nn.Module:
    """A zoo network in eval mode (``width_mult`` only when given: the zoo's default otherwise)."""
    from p3d_lightning.models import create_model

    kw: Dict[str, Any] = {"num_classes": num_classes}
    if width_mult is not None:
        kw["width_mult"] = width_mult
    return create_model(name, **kw).eval()


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
    from p3d_lightning.models.fastpath import compare_outputs

    device = torch.device(device)
    rows: List[Dict[str, Any]] = []
    for name, batch_sizes in models:
        base = build_model(name, num_classes, width_mult).to(device)
        stats = ModelStats.of(base, clip_shape)
        calibrate_batchnorm(base, clip_shape)
        log(f"[p3d-bench] {name}: {stats.params:,} params, {stats.gmacs_per_clip:.2f} GMACs/clip "
            f"at {'x'.join(map(str, clip_shape))}")
        nets: Dict[str, nn.Module] = {}
        for s in settings:
            t0 = time.perf_counter()
            nets[s] = inference_model(base, s, device)
            if s != "fp32":
                log(f"[p3d-bench]   built {s} in {time.perf_counter() - t0:.1f}s")
        del base
        for bs in batch_sizes:
            results: Dict[str, List[SpeedResult]] = {s: [] for s in settings}
            for r in range(max(1, rounds)):
                for s in settings:
                    res = measure_inference_speed(
                        nets[s], clip_shape, bs, warmup=warmup if r == 0 else 1,
                        repeats=repeats, device=device, setting_name=s,
                        measure_memory=(r == 0))
                    results[s].append(res)
                    log(f"[p3d-bench]   {name} bs={bs} round {r + 1} {s}: "
                        f"{res.clips_per_s:.2f} clips/s")
            plain_cps = None
            for s in settings:
                row = bench_row(name, stats, results[s], passes=1, baseline=plain_cps,
                                is_baseline=(s == "fp32"), ceiling=ceiling)
                if s == "fp32":
                    plain_cps = row["clips_per_s"]
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
        del nets
        gc.collect()
    return rows
