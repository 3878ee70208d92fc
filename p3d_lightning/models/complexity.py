"""Model size and cost: parameters, fp32 size and GMACs per clip (the paper's Table 1 columns)."""

from __future__ import annotations

import copy
from typing import Dict, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "model_complexity"]

#: Bytes per MB in ``size_mb``: MiB (2**20). 23,714,981 fp32 parameters (ResNet-50, 101
#: classes) give 90.5 MiB and P3D ResNet-50 95.9 MiB; the paper says 92 and 98 MB. With
#: 10**6 they would be 94.9 and 100.5, further from the paper, so we use 2**20.
BYTES_PER_MB = 2**20


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_complexity(model: nn.Module, input_shape: Sequence[int] = (3, 16, 160, 160)) -> Dict[str, float]:
    """Parameters, fp32 size and GMACs for one clip of ``input_shape`` = (C, T, H, W).

    Returns ``dict(params=int, size_mb=float, gmacs=float)``: ``size_mb`` is
    ``params * 4 / 2**20`` (MiB, see ``BYTES_PER_MB``); ``gmacs`` counts multiply-accumulates
    of convolutions and linear layers (FlopCounterMode FLOPs / 2 / 1e9), batch size 1.
    The count runs on a ``meta``-device copy of the model: no real compute, the model itself
    is untouched.
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (C, T, H, W) for one clip, got {tuple(input_shape)}")
    params = count_params(model)
    meta_model = copy.deepcopy(model).to("meta").eval() if not _on_meta(model) else model
    x = torch.empty((1, *input_shape), device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(x)
    return dict(params=params, size_mb=params * 4 / BYTES_PER_MB, gmacs=counter.get_total_flops() / 2 / 1e9)


def _on_meta(model: nn.Module) -> bool:
    tensors = list(model.parameters()) + list(model.buffers())
    return bool(tensors) and all(t.is_meta for t in tensors)
