"""Clip transforms: uint8 ``(T, H, W, C)`` clips in, float ``(C, T, H, W)`` clips out.

The paper's recipes (resizing happens earlier, inside the decoder, see ``decode.read_frames``):

* P3D train: frames resized to 182x242, one random 160x160 crop for the whole clip, random
  horizontal flip. Test: centre crop.
* 2D ResNet-50 baseline: 240x320, random 224 crop + flip; test centre crop.

Every frame of a clip gets the same crop and the same flip. Randomness comes from the
``random.Random`` passed in (seeded per sample by the dataset), never from global state.

Normalisation:

* ``"imagenet"``: RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided by std
  (0.229, 0.224, 0.225) (torchvision ImageNet weights).
* ``"caffe"``: the released P3D-199 weights: 0-255 pixels, channels in BGR order, minus
  (104, 117, 123), no std.
"""
from __future__ import annotations

import random
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "NORMALIZATIONS",
    "random_crop_params",
    "center_crop_params",
    "crop",
    "hflip",
    "resize_clip",
    "normalize",
    "ClipTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)
NORMALIZATIONS = ("imagenet", "caffe")


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


def normalize(clip: torch.Tensor, normalization: str = "imagenet") -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` RGB -> normalised float32 ``(C, T, H, W)``."""
    x = clip.permute(3, 0, 1, 2).float()  # (C, T, H, W)
    if normalization == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1) * 255.0
        return (x - mean) / std
    if normalization == "caffe":
        x = x.flip(0)  # RGB -> BGR
        return x - torch.tensor(CAFFE_BGR_MEAN).view(3, 1, 1, 1)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


class ClipTransform:
    """Crop (+ flip) + normalise a uint8 ``(T, H, W, C)`` clip into float ``(C, T, H, W)``.

    ``train=True``: random ``crop_size`` crop and, if ``horizontal_flip``, a flip with
    probability 0.5. ``train=False``: centre crop, no flip. Frames smaller than
    ``crop_size`` are first upscaled so their short side equals ``crop_size``.
    """

    def __init__(self, train: bool, crop_size: int, horizontal_flip: bool = True,
                 normalization: str = "imagenet"):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.train = train
        self.crop_size = int(crop_size)
        self.horizontal_flip = horizontal_flip
        self.normalization = normalization

    def __call__(self, clip: torch.Tensor, rng: Optional[random.Random] = None) -> torch.Tensor:
        _, h, w, _ = clip.shape
        c = self.crop_size
        if h < c or w < c:
            s = c / min(h, w)
            clip = resize_clip(clip, (max(c, round(h * s)), max(c, round(w * s))))
            _, h, w, _ = clip.shape
        if self.train:
            rng = rng or random.Random(0)
            top, left = random_crop_params(h, w, c, rng)
            clip = crop(clip, top, left, c)
            if self.horizontal_flip and rng.random() < 0.5:
                clip = hflip(clip)
        else:
            top, left = center_crop_params(h, w, c)
            clip = crop(clip, top, left, c)
        return normalize(clip, self.normalization).contiguous()

    def __repr__(self) -> str:
        return (f"ClipTransform(train={self.train}, crop_size={self.crop_size}, "
                f"horizontal_flip={self.horizontal_flip}, normalization={self.normalization!r})")
