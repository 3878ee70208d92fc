"""The P3D ResNet trunk: one builder for P3D-63/131/199, the P3D-A/B/C variants, the
frame-level ResNet-50 baseline and test-size nets (see ``zoo.py`` for the table).

Layout (official P3D-199 / P3D ResNet-50, input N x 3 x 16 x 160 x 160):

    stem   conv 1x7x7 /(1,2,2) -> BN -> ReLU -> max pool (2,3,3) /(2,2,2) ceil mode
                                                         16x160x160 -> 8x80x80 -> 8x40x40
    res2   P3D units, width 64   -> temporal max pool (2,1,1)   8x40x40 -> 4x40x40
    res3   P3D units, width 128  -> temporal max pool (2,1,1)   4x20x20 -> 2x20x20
    res4   P3D units, width 256  -> temporal max pool (2,1,1)   2x10x10 -> 1x10x10
    res5   2D units, width 512                                  1x5x5
    head   adaptive average pool over (T, H, W) -> dropout -> fc

Every pool rounds up, as Caffe's ``Pooling3D`` does (``ceil((T - k) / s) + 1``, no padding):
T = 16 gives 8, 4, 2, 1 either way, but T = 18 gives 9, 5, 3, 2 (rounding down: 9, 4, 2, 1),
so a longer clip keeps the frames the official network keeps. See :func:`caffe_pooled_len`.

The kind of every block is decided up front by the pure function :func:`block_kinds`, so
printing its result shows the network.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.fx
from torch import nn

from .units import UNIT_KINDS, Bottleneck, make_unit

__all__ = ["P3DResNet", "block_kinds", "format_block_kinds", "scaled_width", "check_clip", "caffe_pooled_len",
           "INITS"]

#: Weight initialisations of :class:`P3DResNet` (``init=``).
INITS = ("kaiming", "caffe")

STAGE_NAMES = ("res2", "res3", "res4", "res5")


def block_kinds(
    depths: Sequence[int],
    unit_pattern: Sequence[str] = ("A", "B", "C"),
    stages_2d: Sequence[bool] = (False, False, False, True),
) -> List[Tuple[str, ...]]:
    """The unit kind of every block, per stage.

    The pattern is cycled by the global index of the block among the P3D (non-2D) stages;
    blocks of 2D stages are ``"2D"``. ResNet-50 depths (3, 4, 6, 3) with the default pattern
    give res2 A,B,C; res3 A,B,C,A; res4 B,C,A,B,C,A; res5 2D,2D,2D.
    """
    if len(depths) != len(stages_2d):
        raise ValueError(f"depths {tuple(depths)} and stages_2d {tuple(stages_2d)} must have the same length")
    if not unit_pattern:
        raise ValueError("unit_pattern must name at least one unit kind")
    for kind in unit_pattern:
        if kind not in UNIT_KINDS:
            raise ValueError(f"unknown unit kind {kind!r} in unit_pattern; expected one of {list(UNIT_KINDS)}")
    kinds, i = [], 0
    for depth, is_2d in zip(depths, stages_2d):
        if is_2d:
            kinds.append(("2D",) * depth)
        else:
            kinds.append(tuple(unit_pattern[(i + j) % len(unit_pattern)] for j in range(depth)))
            i += depth
    return kinds


def format_block_kinds(kinds: Sequence[Sequence[str]]) -> str:
    """One line per stage, e.g. ``res2: A B C``."""
    names = STAGE_NAMES if len(kinds) == len(STAGE_NAMES) else [f"stage{i + 1}" for i in range(len(kinds))]
    return "\n".join(f"{name}: {' '.join(stage)}" for name, stage in zip(names, kinds))


def scaled_width(width: int, width_mult: float, min_width: int = 8) -> int:
    """``width * width_mult`` rounded to an int, at least ``min_width`` (8)."""
    return max(min_width, int(round(width * width_mult)))


def caffe_pooled_len(t: int, kernel: int, stride: int) -> int:
    """Output length of an unpadded max pool in Caffe's arithmetic: ``ceil((t - kernel) / stride) + 1``.

    This is ``Pooling3D``'s temporal formula (and Caffe's spatial one); ``nn.MaxPool3d`` with
    ``ceil_mode=True`` and no padding gives the same length for every ``t >= 1``, including
    ``t < kernel`` (one window over what there is). 0 for an empty input.
    """
    if t < 1:
        return 0
    return -(-(t - kernel) // stride) + 1


@torch.fx.wrap
def check_clip(x: torch.Tensor, in_channels: int, min_clip_len: int) -> torch.Tensor:
    """Validate a (N, C, T, H, W) clip and return it unchanged.

    Registered with ``torch.fx.wrap``: ``torch.fx.symbolic_trace`` records it as one call
    instead of tracing into it, so traced models keep validating their input.
    """
    if x.dim() != 5:
        raise ValueError(
            f"expected a 5-D clip (N, C, T, H, W), got shape {tuple(x.shape)}; "
            "for a single frame use T = 1, e.g. x.unsqueeze(2)"
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channels (dim 1 of N, C, T, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] < min_clip_len:
        raise ValueError(
            f"clip length T={x.shape[2]} is too short: this network needs "
            f"T >= {min_clip_len} frames (any T >= {min_clip_len} works; got shape {tuple(x.shape)})"
        )
    return x


class P3DResNet(nn.Module):
    """P3D ResNet for (N, C, T, H, W) clips.

    Args:
        depths: blocks per stage (res2..res5), e.g. (3, 4, 6, 3) for a ResNet-50 base.
        unit_pattern: unit kinds cycled by global block index over the P3D stages,
            e.g. ("A", "B", "C") for the mixed P3D ResNet, ("A",) for P3D-A.
        stages_2d: per stage, whether it is made of plain 2D units.
        temporal_pool: per stage, whether a (2,1,1) temporal max pool follows it.
        stem_temporal_pool: whether the stem max pool also halves T (kernel (2,3,3)).
        widths: bottleneck widths per stage before ``width_mult``; outputs are 4x.
        stem_width: stem channels before ``width_mult``.
        width_mult: scales stem and stage widths (rounded, at least 8) for small experiments.
        in_channels: 3 for RGB, 2 for optical flow.
        num_classes: classifier outputs.
        dropout: dropout probability before ``fc``.
        zero_init_residual: last BN of every unit starts at gamma 0 (each unit the identity).
        init: ``"kaiming"`` (default; He normal, fan_out, for convs, PyTorch's default for
            ``fc``) or ``"caffe"``, the official deploy prototxts' fillers: convs gaussian
            std 0.001 (RGB) or xavier (Caffe's: uniform +-sqrt(3 / fan_in)) when
            ``in_channels == 2`` (the flow prototxt); ``fc`` gaussian std 0.001, bias 0;
            BN gamma 1, beta 0. Used from scratch; loaders overwrite it.

    ``forward(x)`` returns logits (N, num_classes); ``forward_features(x)`` the globally
    average-pooled pool5 feature (N, num_features). With no temporal pooling at all (the
    frame-level ResNet-50) every frame is scored independently and the head averages over
    frames, so both (N, 3, 1, 224, 224) and (N, 3, 25, 224, 224) work.
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 4, 6, 3),
        unit_pattern: Sequence[str] = ("A", "B", "C"),
        stages_2d: Sequence[bool] = (False, False, False, True),
        temporal_pool: Sequence[bool] = (True, True, True, False),
        stem_temporal_pool: bool = True,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        width_mult: float = 1.0,
        in_channels: int = 3,
        num_classes: int = 101,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        if not (len(depths) == len(stages_2d) == len(temporal_pool) == len(widths)):
            raise ValueError(
                "depths, stages_2d, temporal_pool and widths need one entry per stage, got "
                f"{tuple(depths)}, {tuple(stages_2d)}, {tuple(temporal_pool)}, {tuple(widths)}"
            )
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.block_kinds = block_kinds(depths, unit_pattern, stages_2d)
        self.stem_temporal_pool = stem_temporal_pool
        self.temporal_pool = tuple(bool(p) for p in temporal_pool)

        stem = scaled_width(stem_width, width_mult)
        self.conv1 = nn.Conv3d(in_channels, stem, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        # Caffe pooling: no padding, ceil mode (80x80 -> 40x40, 112x112 -> 56x56).
        kt = 2 if stem_temporal_pool else 1
        self.maxpool = nn.MaxPool3d((kt, 3, 3), stride=(kt, 2, 2), ceil_mode=True)

        channels = stem
        for i, (kinds, width, pool) in enumerate(zip(self.block_kinds, widths, temporal_pool)):
            width = scaled_width(width, width_mult)
            blocks = []
            for j, kind in enumerate(kinds):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(make_unit(kind, channels, width, stride))
                channels = blocks[-1].out_channels
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            # ceil mode, as Caffe's Pooling3D: an odd T keeps its last frame (9 -> 5, not 4)
            pool_layer = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1), ceil_mode=True) if pool else nn.Identity()
            self.add_module(f"tpool{i + 1}", pool_layer)
        self.num_stages = len(self.block_kinds)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.min_clip_len = self._min_clip_len()
        self.zero_init_residual = zero_init_residual
        self.init = init
        self._init_weights()

    def _init_weights(self) -> None:
        caffe = self.init == "caffe"
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                if not caffe:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif self.in_channels == 2:
                    # deploy_p3d_resnet_kinetics_flow.prototxt: weight_filler "xavier" on every
                    # conv; Caffe's xavier is uniform(+-sqrt(3 / fan_in)), fan_in = C_in * kernel
                    bound = (3.0 / m.weight[0].numel()) ** 0.5
                    nn.init.uniform_(m.weight, -bound, bound)
                else:
                    # deploy_p3d_resnet_{kinetics,sports1m}.prototxt: gaussian std 0.001
                    nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)  # the BN layers' slope_filler 1, bias_filler 0
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and caffe:
                nn.init.normal_(m.weight, std=0.001)  # fc: gaussian 0.001 in all three prototxts
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            # Each residual unit starts as the identity (Goyal et al., 2017): stable training
            # from scratch at higher learning rates. Not in the paper, which starts from ImageNet.
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn4.weight)

    def output_clip_len(self, clip_len: int) -> int:
        """Temporal length entering the head for an input of ``clip_len`` frames (0 = too short).

        Caffe's arithmetic (:func:`caffe_pooled_len`) through the stem pool and every temporal
        pool: 16 -> 8 -> 4 -> 2 -> 1, 18 -> 9 -> 5 -> 3 -> 2, 32 -> 16 -> 8 -> 4 -> 2.
        """
        t = caffe_pooled_len(clip_len, 2, 2) if self.stem_temporal_pool else max(int(clip_len), 0)
        for pool in self.temporal_pool:
            if pool:
                t = caffe_pooled_len(t, 2, 2)
        return t

    def _min_clip_len(self) -> int:
        t = 1
        while self.output_clip_len(t) < 1:
            t += 1
        return t

    def describe(self) -> str:
        """The unit kind of every block, one line per stage (see :func:`format_block_kinds`)."""
        return format_block_kinds(self.block_kinds)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) clip -> (N, num_features) globally average-pooled pool5 feature."""
        x = check_clip(x, self.in_channels, self.min_clip_len)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, stem, T/2, H/4, W/4)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)  # (N, C_i, T_i, H_i, W_i)
            x = getattr(self, f"tpool{i}")(x)  # T halved after res2..res4
        return torch.flatten(self.avgpool(x), 1)  # (N, num_features)

    def forward_head(self, feat: torch.Tensor) -> torch.Tensor:
        """(N, num_features) -> (N, num_classes) logits (dropout, then fc)."""
        return self.fc(self.dropout(feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) clip -> (N, num_classes) logits."""
        return self.forward_head(self.forward_features(x))
