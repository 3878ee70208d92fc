"""Which frames to take: pure functions of integers (no I/O, no global RNG state).

A clip is ``clip_len`` frames ``frame_stride`` apart, so it spans
``(clip_len - 1) * frame_stride + 1`` frames of the video.

Short videos (fewer frames than a clip spans) never raise. ``short_policy`` decides:

* ``"repeat_last"`` (default): the clip starts at frame 0 and indices past the end repeat the
  last frame (the video "freezes"), so the motion that is there keeps its direction.
* ``"loop"``: indices wrap around to the start (``i % num_frames``).

Randomness comes from ``derive_seed(seed, epoch, index)``: one generator per sample, made from
integers only, so the clip a sample gets does not depend on which worker or rank decodes it,
on the number of workers, or on what was sampled before (resume and DDP are reproducible).
"""
from __future__ import annotations

import hashlib
import random
from typing import List

__all__ = [
    "SHORT_POLICIES",
    "clip_span",
    "derive_seed",
    "clip_indices",
    "train_clip_indices",
    "eval_clip_starts",
    "eval_clip_indices",
]

SHORT_POLICIES = ("repeat_last", "loop")


def clip_span(clip_len: int, frame_stride: int = 1) -> int:
    """Number of video frames a clip covers."""
    if clip_len < 1 or frame_stride < 1:
        raise ValueError(f"clip_len and frame_stride must be >= 1, got {clip_len}, {frame_stride}")
    return (clip_len - 1) * frame_stride + 1


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers, e.g. ``derive_seed(seed, epoch, index)``.

    Hash-based, so neighbouring inputs give unrelated streams and the result is the same in
    every process and Python version (unlike ``hash``).
    """
    data = ",".join(str(int(v)) for v in values).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def clip_indices(start: int, num_frames: int, clip_len: int, frame_stride: int = 1,
                 short_policy: str = "repeat_last") -> List[int]:
    """Frame indices of the clip starting at ``start``, mapped into ``[0, num_frames)``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
    raw = [start + i * frame_stride for i in range(clip_len)]
    if short_policy == "loop":
        return [i % num_frames for i in raw]
    return [min(i, num_frames - 1) for i in raw]


def train_clip_indices(num_frames: int, clip_len: int, frame_stride: int, seed: int,
                       short_policy: str = "repeat_last") -> List[int]:
    """One random window for training: start uniform over all windows that fit the video.

    ``seed`` is an integer (typically ``derive_seed(seed, epoch, index)``); the same arguments
    always give the same window.
    """
    span = clip_span(clip_len, frame_stride)
    max_start = max(0, num_frames - span)
    start = random.Random(seed).randint(0, max_start)
    return clip_indices(start, num_frames, clip_len, frame_stride, short_policy)


def eval_clip_starts(num_frames: int, clip_len: int, frame_stride: int, num_clips: int) -> List[int]:
    """Start frames of ``num_clips`` windows spaced uniformly from the first to the last window.

    One clip is centred. For single frames (``clip_len=1``) this is ``num_clips`` frames
    spread evenly over the video, e.g. the 25 test frames of the 2D ResNet-50 baseline.
    Short videos give starts of 0.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    max_start = max(0, num_frames - clip_span(clip_len, frame_stride))
    if num_clips == 1:
        return [max_start // 2]
    # round-half-up of k * max_start / (num_clips - 1) in integer arithmetic
    return [(2 * k * max_start + (num_clips - 1)) // (2 * (num_clips - 1)) for k in range(num_clips)]


def eval_clip_indices(num_frames: int, clip_len: int, frame_stride: int, num_clips: int,
                      clip_idx: int, short_policy: str = "repeat_last") -> List[int]:
    """Frame indices of evaluation clip ``clip_idx`` (0-based) of ``num_clips``."""
    if not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx must be in [0, {num_clips}), got {clip_idx}")
    start = eval_clip_starts(num_frames, clip_len, frame_stride, num_clips)[clip_idx]
    return clip_indices(start, num_frames, clip_len, frame_stride, short_policy)
