"""The one timing loop: warm-up calls, timed calls bracketed by a device synchronise, a budget.

Inference (:mod:`~p3d_lightning.speed.inference`), training (:mod:`~p3d_lightning.speed.training`)
and the ceiling (:mod:`~p3d_lightning.speed.ceiling`) all time through :func:`time_calls`, so
they warm up, synchronise and stop the same way; the statistics over the times are
:class:`~p3d_lightning.speed.config.SpeedResult`'s.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import torch
from torch import nn

from p3d_lightning.speed.environment import minor_faults

__all__ = ["Timing", "model_device", "sync", "time_calls"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@dataclass(frozen=True)
class Timing:
    """What :func:`time_calls` measured: seconds per timed call and the page faults they caused."""

    times: Tuple[float, ...]
    minor_faults: int

    @property
    def faults_per_call(self) -> float:
        """Minor page faults per timed call (fresh memory touched each call; see ``--malloc``)."""
        return self.minor_faults / len(self.times)


def time_calls(fn: Callable[[int], Any], device: torch.device, *, warmup: int, repeats: int,
               max_seconds: Optional[float] = None) -> Timing:
    """Call ``fn(i)`` ``warmup`` times untimed, then up to ``repeats`` times timed.

    ``i`` counts every call from 0 (training cycles its batches with it). Each timed call is
    bracketed by :func:`sync`. ``max_seconds`` bounds the timed part: calls stop once that much
    time is spent (at least two are timed), so a slow machine measures fewer repeats instead
    of taking minutes.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_calls: need repeats >= 1 and warmup >= 0; got {repeats}, {warmup}")
    for i in range(warmup):
        fn(i)
    sync(device)
    faults0 = minor_faults()
    times = []
    for i in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn(warmup + i)
        sync(device)
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and i >= 1 and sum(times) >= max_seconds:
            break
    return Timing(tuple(times), minor_faults() - faults0)
