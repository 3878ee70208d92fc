"""The residual units of the paper: P3D-A, P3D-B, P3D-C and the plain 2D bottleneck.

Every unit is a bottleneck (1x1x1 reduce -> spatio-temporal part -> 1x1x1 restore) plus a
shortcut, and all kinds share one parameter layout, so a block's state dict does not depend
on its wiring:

    conv1/bn1  reduce   1x1x1 (carries the spatial stride, Caffe / ResNet v1 style)
    conv2/bn2  S        1x3x3
    conv3/bn3  T        3x1x1, padding (1, 0, 0)   (absent in 2D units)
    conv4/bn4  restore  1x1x1, 4x wider
    downsample          Sequential(conv 1x1x1, bn), only when the shape changes

The spatio-temporal part follows the official Caffe graph (not the qijiezhao/GluonCV ports),
with ``u`` the output of the reduce conv:

    A (cascade):            ReLU(BN(T(ReLU(BN(S(u))))))
    B (parallel):           ReLU(ReLU(BN(S(u))) + BN(T(u)))
    C (cascade + shortcut): s = ReLU(BN(S(u))); ReLU(0.5 * s + 0.5 * BN(T(s)))
    2D:                     ReLU(BN(S(u)))

Every weight is a ``Conv3d`` (the 2D units use 1x3x3 kernels), so every tensor is 5-D, and
every BatchNorm directly follows exactly one conv whose output feeds nothing else: the BNs
can be folded into the convs for inference.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

import torch
from torch import nn

__all__ = ["UNIT_KINDS", "UNIT_TYPES", "Bottleneck", "UnitA", "UnitB", "UnitC", "Unit2D", "make_unit"]

#: The unit kinds, in the order the paper introduces them.
UNIT_KINDS: Tuple[str, ...] = ("A", "B", "C", "2D")


def _temporal_conv_fp32_on_cpu_bf16(conv: nn.Conv3d, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor):
    """Forward hook on every T conv: redo it in fp32 where the CPU's bf16 kernel is unreliable.

    Work-around for a oneDNN bug (torch 2.13, CPU): under bf16 autocast, the *weight gradient*
    of a 3x1x1 conv whose input has fewer frames than the kernel (T = 2 in res4 for a 16-frame
    clip) is sometimes NaN/inf (reproduced in tests/test_units.py). Only while training on the
    CPU under autocast with such a short input is the conv recomputed in fp32 (autocast off);
    everywhere else the hook returns the output unchanged. Hooks are invisible to torch.fx, so
    tracing and BN folding see a plain Conv3d.
    """
    x = inputs[0]
    if (
        x.device.type == "cpu"
        and x.shape[2] < conv.kernel_size[0]
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
    ):
        with torch.autocast("cpu", enabled=False):
            return conv._conv_forward(x.float(), conv.weight.float(), conv.bias)
    return output


class Bottleneck(nn.Module):
    """Base bottleneck; subclasses define :meth:`spatiotemporal` (the S/T structure).

    Args:
        in_channels: channels of the input.
        width: bottleneck width (channels of S and T); the unit outputs ``4 * width``.
        stride: spatial stride, applied by the reduce conv and the projection shortcut.
    """

    expansion = 4
    kind: str = ""
    has_temporal = True

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.in_channels, self.width, self.out_channels, self.stride = in_channels, width, out_channels, stride
        self.conv1 = nn.Conv3d(in_channels, width, 1, stride=(1, stride, stride), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        if self.has_temporal:
            self.conv3 = nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0), bias=False)
            self.bn3 = nn.BatchNorm3d(width)
            self.conv3.register_forward_hook(_temporal_conv_fp32_on_cpu_bf16)
        self.conv4 = nn.Conv3d(width, out_channels, 1, bias=False)
        self.bn4 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def spatial(self, u: torch.Tensor) -> torch.Tensor:
        """S branch with its BN and ReLU: ReLU(BN(S(u)))."""
        return self.relu(self.bn2(self.conv2(u)))

    def temporal(self, u: torch.Tensor) -> torch.Tensor:
        """T branch with its BN, no ReLU: BN(T(u))."""
        return self.bn3(self.conv3(u))

    def spatiotemporal(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, T, H, W)
        shortcut = x if self.downsample is None else self.downsample(x)
        u = self.relu(self.bn1(self.conv1(x)))  # (N, width, T, H/s, W/s)
        out = self.spatiotemporal(u)  # (N, width, T, H/s, W/s)
        out = self.bn4(self.conv4(out))  # (N, 4 * width, T, H/s, W/s)
        return self.relu(out + shortcut)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, in={self.in_channels}, width={self.width}, stride={self.stride}"


class UnitA(Bottleneck):
    """P3D-A (cascade): S -> BN -> ReLU -> T -> BN -> ReLU."""

    kind = "A"

    def spatiotemporal(self, u: torch.Tensor) -> torch.Tensor:
        return self.relu(self.temporal(self.spatial(u)))


class UnitB(Bottleneck):
    """P3D-B (parallel): ReLU(BN(S(u))) + BN(T(u)), ReLU after the sum."""

    kind = "B"

    def spatiotemporal(self, u: torch.Tensor) -> torch.Tensor:
        return self.relu(self.spatial(u) + self.temporal(u))


class UnitC(Bottleneck):
    """P3D-C (cascade + shortcut): s = ReLU(BN(S(u))); ReLU(0.5 * s + 0.5 * BN(T(s)))."""

    kind = "C"

    def spatiotemporal(self, u: torch.Tensor) -> torch.Tensor:
        s = self.spatial(u)
        return self.relu(0.5 * s + 0.5 * self.temporal(s))


class Unit2D(Bottleneck):
    """Plain 2D bottleneck (res5 of P3D, every stage of the frame-level ResNet-50)."""

    kind = "2D"
    has_temporal = False

    def spatiotemporal(self, u: torch.Tensor) -> torch.Tensor:
        return self.spatial(u)


#: The unit-kind table: kind name -> class.
UNIT_TYPES: Dict[str, Type[Bottleneck]] = {"A": UnitA, "B": UnitB, "C": UnitC, "2D": Unit2D}


def make_unit(kind: str, in_channels: int, width: int, stride: int = 1) -> Bottleneck:
    """Build one unit of the given kind ("A", "B", "C" or "2D")."""
    if kind not in UNIT_TYPES:
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {list(UNIT_TYPES)}")
    return UNIT_TYPES[kind](in_channels, width, stride)
