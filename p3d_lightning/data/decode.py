"""Reading frames with PyAV: ``read_frames`` (one clip), ``read_clips`` (several clips of a video
from as few decoding passes as possible) and ``read_all_frames`` (everything).

Frame indices are presentation-order indices (see :mod:`.container`). ``read_frames`` seeks
to the keyframe at or before the first wanted frame and decodes forward only as far as the
last wanted frame, converting just the wanted frames to RGB (optionally resized inside
libswscale, so full-size frames are never materialised as arrays).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from av.video.reformatter import VideoReformatter
import numpy as np
import torch

from .container import AV_ERRORS, DecodeError, StreamClock, keyframe_indices, open_video

__all__ = ["Size", "output_size", "read_frames", "read_all_frames", "read_clips"]

Size = Union[None, int, Tuple[int, int], Sequence[int]]


def output_size(width: int, height: int, size: Size) -> Tuple[int, int]:
    """Output ``(height, width)`` for a ``size`` argument.

    ``None`` keeps the source size; an int resizes the short side to ``size`` keeping the aspect
    ratio; a pair is an exact ``(height, width)``.
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        if height <= width:
            return size, max(1, int(round(width * size / height)))
        return max(1, int(round(height * size / width))), size
    if len(size) != 2:
        raise ValueError(f"size must be None, an int (short side) or (height, width); got {size!r}")
    return int(size[0]), int(size[1])


class _Converter:
    """yuv -> rgb24 (+ resize) with one reused swscale context.

    ``VideoFrame.to_ndarray(format=...)`` builds a new swscale context for every frame, which
    costs ~1-3 ms at 320x240, 50x the conversion itself; reusing one reformatter avoids it.
    """

    def __init__(self):
        self._reformatter = VideoReformatter()

    def __call__(self, frame, out_hw: Tuple[int, int]) -> np.ndarray:
        h, w = out_hw
        out = self._reformatter.reformat(frame, format="rgb24", width=w, height=h, interpolation="BILINEAR")
        return out.to_ndarray()


def read_frames(
    path: str,
    frame_indices: Sequence[int],
    size: Size = None,
    *,
    seek: bool = True,
    thread_type: Optional[str] = None,
) -> torch.Tensor:
    """Decode the frames ``frame_indices`` (presentation order, repeats allowed) of ``path``.

    Returns a uint8 tensor ``(T, H, W, C)`` (C = 3, RGB) in the order of ``frame_indices``,
    equal to the same frames taken from a full sequential decode. ``size``: ``None`` (source
    size), an int (short side) or ``(height, width)``; resizing happens in the decoder.

    ``seek=False`` decodes from the first frame instead of seeking (the naive approach, kept
    for benchmarks). ``thread_type`` is passed to the codec context ("AUTO", "FRAME",
    "SLICE"). The default is single-threaded: threading gained nothing for UCF101-sized .avi
    clips on one core, and "AUTO" (frame threads) hung on an H.264 .mp4 here when decoding
    stopped early (see docs/data.md).

    An index past the last decodable frame repeats the last frame the file has (so a video
    whose index overestimates its length still yields a clip); a file with no decodable frame
    at or before the wanted range raises ``DecodeError`` naming the file. So does a clip whose
    decoding passes a frame the decoder flags corrupt (``frame.is_corrupt``: damaged bytes that
    FFmpeg would otherwise conceal silently), from the keyframe it starts at to its last frame;
    frames a seek decodes before that keyframe (leading B-frames) are not checked.
    """
    wanted = [int(i) for i in frame_indices]
    if not wanted:
        raise ValueError("frame_indices is empty")
    if min(wanted) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(wanted)}")
    targets = sorted(set(wanted))
    first = targets[0]
    got: dict = {}
    _to_array = _Converter()
    with open_video(path) as container:
        stream = container.streams.video[0]
        if thread_type:
            stream.thread_type = thread_type
        clock = StreamClock(stream)
        out_hw = None
        try:
            for attempt in range(2):
                start_from_zero = attempt == 1 or not seek or first == 0
                if attempt == 1:
                    container.seek(clock.start, stream=stream, backward=True, any_frame=False)
                elif not start_from_zero:
                    container.seek(clock.pts(first), stream=stream, backward=True, any_frame=False)
                got.clear()
                ti = 0  # next target to fill
                prev = None  # (index, frame) of the newest decoded frame
                landed_late = False
                keyed = False  # a keyframe was decoded in this pass
                for frame in container.decode(stream):
                    keyed = keyed or frame.key_frame
                    if frame.is_corrupt and keyed:
                        idx = clock.index(frame.pts) if frame.pts is not None else "?"
                        raise DecodeError(path, f"frame {idx} is corrupt (damaged data the decoder flagged); "
                                                "`p3d-prescan --full` counts the corrupt frames of a file")
                    if frame.pts is None:
                        continue
                    idx = clock.index(frame.pts)
                    if out_hw is None:
                        out_hw = output_size(frame.width, frame.height, size)
                    if prev is None and idx > first and not start_from_zero:
                        landed_late = True  # seek went past the wanted frame: retry from the start
                        break
                    # Targets strictly before this frame take the previous frame (exact when no
                    # frame is missing; holds the last frame across gaps from dropped frames).
                    while ti < len(targets) and targets[ti] < idx:
                        src = prev[1] if prev is not None else frame
                        got[targets[ti]] = _to_array(src, out_hw)
                        ti += 1
                    if ti < len(targets) and targets[ti] == idx:
                        got[idx] = _to_array(frame, out_hw)
                        ti += 1
                    prev = (idx, frame)
                    if ti >= len(targets):
                        break
                if landed_late:
                    continue
                if ti < len(targets):
                    if prev is None:
                        raise DecodeError(path, f"no decodable frame at or before index {first}")
                    tail = _to_array(prev[1], out_hw)
                    for t in targets[ti:]:
                        got[t] = tail
                break
        except DecodeError:
            raise
        except AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
    if len(got) < len(targets):
        raise DecodeError(path, f"could not locate frame {first} (seek failed twice)")
    first_frame = got[wanted[0]]
    out = np.empty((len(wanted),) + first_frame.shape, dtype=np.uint8)  # (T, H, W, C)
    for k, i in enumerate(wanted):
        out[k] = got[i]
    return torch.from_numpy(out)


def read_all_frames(path: str, size: Size = None, num_frames: Optional[int] = None) -> torch.Tensor:
    """Full sequential decode, uint8 ``(T, H, W, C)``: every frame, or the first ``num_frames``.

    For tests, small files and the naive baseline of the decode benchmark.
    """
    frames = []
    _to_array = _Converter()
    with open_video(path) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                frames.append(_to_array(frame, output_size(frame.width, frame.height, size)))
                if num_frames is not None and len(frames) >= num_frames:
                    break
        except AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
    if not frames:
        raise DecodeError(path, "no decodable frame")
    return torch.from_numpy(np.stack(frames))


def read_clips(
    path: str,
    clips: Sequence[Sequence[int]],
    size: Size = None,
    *,
    thread_type: Optional[str] = None,
    keyframes: Optional[Sequence[int]] = None,
) -> list:
    """Several clips of one video from as few decoding passes as possible.

    ``clips`` is a list of frame-index lists (each as ``read_frames`` takes them). Returns one
    uint8 ``(T, H, W, C)`` tensor per clip, each equal to ``read_frames(path, clip, size)``: the
    clips are merged into runs, each run is one ``read_frames`` call on the union of its
    indices (one seek, one forward pass, every shared frame converted once), and split again.

    Clips join the current run unless seeking would skip decoding: a new run starts only when
    the keyframe at or before the next clip's first frame lies after the run's last frame.
    ``keyframes`` (presentation indices, e.g. from ``keyframe_indices``) are read from the file
    when not given; with ``keyframes=[]`` everything is one pass. For the 20 clips of an
    evaluation video, which overlap or lie a few frames apart, that is one pass per video.
    """
    clips = [[int(i) for i in c] for c in clips]
    if not clips or any(not c for c in clips):
        raise ValueError("clips must be a non-empty list of non-empty frame-index lists")
    if keyframes is None:
        keyframes = keyframe_indices(path)
    kf = sorted(int(k) for k in keyframes)

    def keyframe_before(i: int) -> int:
        lo, hi = 0, len(kf)
        while lo < hi:  # last keyframe <= i
            mid = (lo + hi) // 2
            if kf[mid] <= i:
                lo = mid + 1
            else:
                hi = mid
        return kf[lo - 1] if lo else 0

    order = sorted(range(len(clips)), key=lambda k: min(clips[k]))
    runs: list = []  # [clip numbers]
    run_last = -1
    for k in order:
        first, last = min(clips[k]), max(clips[k])
        if runs and keyframe_before(first) <= run_last + 1:
            runs[-1].append(k)
            run_last = max(run_last, last)
        else:
            runs.append([k])
            run_last = last
    out: list = [None] * len(clips)
    for run in runs:
        union = sorted({i for k in run for i in clips[k]})
        frames = read_frames(path, union, size=size, thread_type=thread_type)  # (U, H, W, C)
        pos = {i: p for p, i in enumerate(union)}
        for k in run:
            out[k] = frames[[pos[i] for i in clips[k]]]
    return out
