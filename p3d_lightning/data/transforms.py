"""Clip transforms: uint8 ``(T, H, W, C)`` clips in, float ``(C, T, H, W)`` clips out.

The paper's recipes (resizing happens earlier, inside the decoder, see ``decode.read_frames``):

* P3D train: frames resized to 182x242, one random 160x160 crop for the whole clip, random
  horizontal flip. Test: centre crop.
* 2D ResNet-50 baseline: 240x320, random 224 crop + flip; test centre crop.

Every frame of a clip gets the same crop and the same flip. Randomness comes from the
``random.Random`` passed in (seeded per sample by the dataset), never from global state.

Normalisation (``normalize``; ``mean``/``std`` are given in the output channel order and in
the normalisation's pixel unit):

* ``"imagenet"``: RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided by std
  (0.229, 0.224, 0.225) (torchvision ImageNet weights).
* ``"caffe"``: the released P3D-199 weights: 0-255 pixels, channels in BGR order (inferred,
  see docs/models.md; ``channel_order="RGB"`` keeps RGB), minus (104, 117, 123), no std.
* Optical flow (2-channel ``x``/``y`` clips, 0-255 with 128 = no motion, see ``data/flow.py``):
  ``"caffe"`` is 0-255 minus 128 (the official README), ``"imagenet"`` is [0, 1] minus 128/255.
  A horizontal flip of a flow clip also negates its ``x`` channel (``255 - x``): a mirrored
  video moves the other way.
"""
from __future__ import annotations

import random
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "NORMALIZATIONS",
    "CHANNEL_ORDERS",
    "default_norm_stats",
    "check_normalization",
    "random_crop_params",
    "center_crop_params",
    "crop",
    "hflip",
    "resize_clip",
    "normalize",
    "flip_flow",
    "ClipTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)
CAFFE_FLOW_MEAN = (128.0, 128.0)
NORMALIZATIONS = ("imagenet", "caffe")
#: Channel orders of a normalised clip: "RGB"/"BGR" for frames, "xy" for 2-channel flow.
CHANNEL_ORDERS = ("RGB", "BGR", "xy")


def default_norm_stats(normalization: str, channel_order: Optional[str] = None,
                       in_channels: int = 3) -> Tuple[str, Tuple[float, ...], Tuple[float, ...]]:
    """``(channel_order, mean, std)`` that ``normalization`` means when nothing overrides them.

    ``mean``/``std`` are listed in ``channel_order``; "caffe" defaults to BGR, "imagenet" to RGB,
    flow (``in_channels=2``) to "xy".
    """
    check_normalization(normalization, channel_order, in_channels)
    if in_channels == 2:
        # 128 is zero motion: it maps to 0 in both pixel units
        return "xy", ((128.0, 128.0) if normalization == "caffe" else (128 / 255, 128 / 255)), (1.0, 1.0)
    if normalization == "caffe":
        order = channel_order or "BGR"
        mean = CAFFE_BGR_MEAN if order == "BGR" else CAFFE_BGR_MEAN[::-1]
        return order, mean, (1.0, 1.0, 1.0)
    order = channel_order or "RGB"
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if order == "RGB" else (IMAGENET_MEAN[::-1], IMAGENET_STD[::-1])
    return order, mean, std


def check_normalization(normalization: str, channel_order: Optional[str] = None, in_channels: int = 3) -> None:
    """Raise ``ValueError`` naming the option for an unknown normalisation or channel order."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if in_channels not in (2, 3):
        raise ValueError(f"clips must have 3 (RGB) or 2 (optical flow x/y) channels, got {in_channels}")
    allowed = ("xy",) if in_channels == 2 else ("RGB", "BGR")
    if channel_order is not None and channel_order not in allowed:
        kind = "optical-flow" if in_channels == 2 else "RGB"
        raise ValueError(f"channel_order must be one of {allowed} for {kind} clips, got {channel_order!r}")


def random_crop_params(height: int, width: int, crop_size: int, rng: random.Random) -> Tuple[int, int]:
    """``(top, left)`` of a uniformly random ``crop_size`` square inside ``height x width``."""
    return rng.randint(0, height - crop_size), rng.randint(0, width - crop_size)


def center_crop_params(height: int, width: int, crop_size: int) -> Tuple[int, int]:
    """``(top, left)`` of the centred ``crop_size`` square."""
    return (height - crop_size) // 2, (width - crop_size) // 2


def crop(clip: torch.Tensor, top: int, left: int, crop_size: int) -> torch.Tensor:
    """Same spatial crop for every frame of a ``(T, H, W, C)`` clip."""
    return clip[:, top:top + crop_size, left:left + crop_size, :]


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror left/right, every frame of a ``(T, H, W, C)`` clip.

    Note: this also mirrors motion (left <-> right, clockwise <-> anticlockwise); do not use it
    on data whose labels depend on motion direction, such as the synthetic dataset.
    """
    return clip.flip(2)


def resize_clip(clip: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a uint8 ``(T, H, W, C)`` clip to ``size = (H, W)``.

    Only a fallback (clips are normally resized inside the decoder)."""
    x = clip.permute(0, 3, 1, 2).float()  # (T, C, H, W)
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def normalize(clip: torch.Tensor, normalization: str = "imagenet", channel_order: Optional[str] = None,
              mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` -> normalised float32 ``(C, T, H, W)``.

    ``C = 3``: decoded RGB frames, reordered to ``channel_order`` (default: BGR for "caffe", RGB
    for "imagenet"). ``C = 2``: optical flow x/y (order kept). ``mean``/``std`` (default: the
    normalisation's own, see :func:`default_norm_stats`) are in the output channel order, in
    0-255 units for "caffe" and [0, 1] units for "imagenet".
    """
    c = clip.shape[-1]
    order, mean0, std0 = default_norm_stats(normalization, channel_order, c)
    mean = tuple(mean0 if mean is None else mean)
    std = tuple(std0 if std is None else std)
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean {mean} and std {std} need one value per channel ({c} channels, order {order})")
    x = clip.permute(3, 0, 1, 2).float()  # (C, T, H, W)
    if order == "BGR":
        x = x.flip(0)  # decoded RGB -> BGR
    scale = 255.0 if normalization == "imagenet" else 1.0  # imagenet stats are for [0, 1] pixels
    m = torch.tensor(mean, dtype=torch.float32).view(c, 1, 1, 1) * scale
    s = torch.tensor(std, dtype=torch.float32).view(c, 1, 1, 1) * scale
    if normalization == "caffe" and all(v == 1.0 for v in std):
        return x - m  # no division: bit-identical to Caffe's mean subtraction
    return (x - m) / s


def flip_flow(clip: torch.Tensor) -> torch.Tensor:
    """Mirror a uint8 ``(T, H, W, 2)`` flow clip left/right; ``x`` motion changes sign (``255 - x``)."""
    out = clip.flip(2).clone()
    out[..., 0] = 255 - out[..., 0]
    return out


class ClipTransform:
    """Crop (+ flip) + normalise a uint8 ``(T, H, W, C)`` clip into float ``(C, T, H, W)``.

    ``train=True``: random ``crop_size`` crop and, if ``horizontal_flip``, a flip with
    probability 0.5 (for 2-channel flow clips also negating ``x``). ``train=False``: centre
    crop, no flip. Frames smaller than ``crop_size`` are first upscaled so their short side
    equals ``crop_size``. ``normalization``, ``channel_order``, ``mean``, ``std``: see
    :func:`normalize`; ``in_channels`` (3 RGB, 2 flow) is what clips must have.
    """

    def __init__(self, train: bool, crop_size: int, horizontal_flip: bool = True,
                 normalization: str = "imagenet", channel_order: Optional[str] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 in_channels: int = 3):
        order, mean0, std0 = default_norm_stats(normalization, channel_order, in_channels)
        self.train = train
        self.crop_size = int(crop_size)
        self.horizontal_flip = horizontal_flip
        self.normalization = normalization
        self.in_channels = int(in_channels)
        self.channel_order = order
        self.mean = tuple(float(v) for v in (mean0 if mean is None else mean))
        self.std = tuple(float(v) for v in (std0 if std is None else std))
        if len(self.mean) != in_channels or len(self.std) != in_channels:
            raise ValueError(f"mean {self.mean} and std {self.std} need {in_channels} values (channel order {order})")

    def __call__(self, clip: torch.Tensor, rng: Optional[random.Random] = None) -> torch.Tensor:
        _, h, w, c = clip.shape
        if c != self.in_channels:
            raise ValueError(f"ClipTransform expects {self.in_channels}-channel clips (T, H, W, C), got shape "
                             f"{tuple(clip.shape)}")
        cs = self.crop_size
        if h < cs or w < cs:
            s = cs / min(h, w)
            clip = resize_clip(clip, (max(cs, round(h * s)), max(cs, round(w * s))))
            _, h, w, _ = clip.shape
        if self.train:
            rng = rng or random.Random(0)
            top, left = random_crop_params(h, w, cs, rng)
            clip = crop(clip, top, left, cs)
            if self.horizontal_flip and rng.random() < 0.5:
                clip = flip_flow(clip) if c == 2 else hflip(clip)
        else:
            top, left = center_crop_params(h, w, cs)
            clip = crop(clip, top, left, cs)
        return normalize(clip, self.normalization, self.channel_order, self.mean, self.std).contiguous()

    def __repr__(self) -> str:
        return (f"ClipTransform(train={self.train}, crop_size={self.crop_size}, "
                f"horizontal_flip={self.horizontal_flip}, normalization={self.normalization!r}, "
                f"channel_order={self.channel_order!r}, mean={self.mean}, std={self.std})")
