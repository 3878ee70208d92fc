"""Training speed: clips/s of forward + cross-entropy + backward + SGD step on random batches.

No data loading (see :mod:`~p3d_lightning.speed.pipeline` for that half) and no Lightning: a
plain loop, so the number is the network's and the precision's, timed through the same
:func:`~p3d_lightning.speed.timing.time_calls` as inference.
"""
from __future__ import annotations

import contextlib
import copy
import gc
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from p3d_lightning.precision import DTYPES, training_precision
from p3d_lightning.speed.ceiling import bench_row
from p3d_lightning.speed.config import ModelStats, SpeedResult
from p3d_lightning.speed.environment import PeakMemory, device_name
from p3d_lightning.speed.inference import build_model
from p3d_lightning.speed.timing import model_device, time_calls

__all__ = ["SYNTHETIC_TRAIN_CFG", "TrainSetting", "measure_training_speed", "run_training_benchmark"]

#: The synthetic-ablation training configuration (experiments/synthetic/p3d.yaml).
SYNTHETIC_TRAIN_CFG = {"width_mult": 0.125, "clip_shape": (3, 16, 80, 80), "batch_size": 16}


def _autocast_dtype(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype of a mixed training precision (None for fp32); others are refused."""
    try:
        name = training_precision(precision, "cpu")
    except ValueError:
        name = ""
    if name not in ("32-true", "bf16-mixed", "16-mixed"):
        raise ValueError(f"measure_training_speed: precision must be 'fp32', 'bf16-mixed' or "
                         f"'16-mixed', got {precision!r}")
    return None if name == "32-true" else DTYPES[name]


def measure_training_speed(model: nn.Module, clip_shape: Sequence[int] = (3, 16, 112, 112),
                           batch_size: int = 4, *, num_classes: Optional[int] = None,
                           precision: str = "fp32", channels_last: bool = False,
                           steps: int = 5, warmup: int = 2, num_batches: int = 4,
                           device: str | torch.device | None = None, lr: float = 1e-3,
                           setting_name: str = "", seed: int = 0) -> SpeedResult:
    """Training throughput (forward + cross-entropy + backward + SGD step) of a plain model.

    Works on a deep copy of ``model`` (the caller's weights are not changed). ``precision``:
    ``'fp32'``, ``'bf16-mixed'`` or ``'16-mixed'`` (autocast; fp32 master weights; a grad
    scaler for fp16 on CUDA). ``channels_last``: model and input in channels_last_3d. The
    same ``num_batches`` random batches (seeded) are cycled for every setting. Returns a
    :class:`SpeedResult` with ``loss_first``/``loss_last`` and ``peak_mem_mb`` (and per clip)
    of one extra untimed step.
    """
    amp_dtype = _autocast_dtype(precision)
    device = torch.device(device) if device is not None else model_device(model)
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

    timing = time_calls(step, device, warmup=warmup, repeats=steps)
    with PeakMemory(device) as mem:  # one extra untimed step (the heap trim must not be timed)
        step(warmup + steps)
    result = SpeedResult(
        setting=setting_name or (precision + ("_cl" if channels_last else "")), batch_times_s=timing.times,
        batch_size=batch_size, clip_shape=tuple(int(s) for s in clip_shape), device=str(device),
        device_name=device_name(device), precision=precision, channels_last=channels_last, warmup=warmup,
        repeats=steps, peak_mem_mb=mem.peak_mb, loss_first=losses[0], loss_last=losses[-1])
    del net, opt, batches
    gc.collect()
    return result


@dataclass(frozen=True)
class TrainSetting:
    """A training setting of ``p3d-bench --train``: precision, memory format, checkpointing."""

    precision: str
    channels_last: bool
    checkpoint: bool


def run_training_benchmark(models: Sequence[str], clip_shape: Sequence[int],
                           settings: Sequence[Tuple[str, TrainSetting]], *, batch_size: int,
                           num_classes: int = 101, width_mult: Optional[float] = None,
                           steps: int = 5, warmup: int = 2, rounds: int = 2,
                           device: str | torch.device = "cpu",
                           ceiling: Optional[Dict[str, Any]] = None,
                           log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    """Measure every named training setting of every model, ``rounds`` times interleaved.

    Speed-ups are relative to the setting named ``fp32``; achieved GFLOP/s counts forward +
    backward as 3x the forward FLOPs (the weight and the input gradients).
    """
    from p3d_lightning.models.checkpointing import enable_activation_checkpointing

    device = torch.device(device)
    rows: List[Dict[str, Any]] = []
    for name in models:
        base = build_model(name, num_classes, width_mult).to(device)
        stats = ModelStats.of(base, clip_shape)
        per_setting: Dict[str, List[SpeedResult]] = {text: [] for text, _ in settings}
        for r in range(max(1, rounds)):
            for text, spec in settings:
                net = base
                if spec.checkpoint:
                    net = copy.deepcopy(base)
                    enable_activation_checkpointing(net)
                res = measure_training_speed(
                    net, clip_shape, batch_size, num_classes=num_classes, precision=spec.precision,
                    channels_last=spec.channels_last, steps=steps, warmup=warmup, device=device,
                    setting_name=text)
                per_setting[text].append(res)
                log(f"[p3d-bench]   train {name} round {r + 1} {text}: {res.clips_per_s:.2f} clips/s")
        plain = None
        for text, _ in settings:
            row = bench_row(name, stats, per_setting[text], passes=3, baseline=plain,
                            is_baseline=(text == "fp32"), ceiling=ceiling)
            if text == "fp32":
                plain = row["clips_per_s"]
            rows.append(row)
    return rows
