"""Opening a video with PyAV: the errors, the metadata, probing, keyframes and full-decode scans.

With :mod:`.decode` (reading frames) and :mod:`.encode` (writing and re-encoding) the only
modules in the package that touch codecs. Nothing here converts pixels, so nothing here needs
torch: ``p3d-prescan`` (probe and scan) starts without it.

Frame indices are presentation-order indices: frame ``i`` is the ``i``-th frame a full
sequential decode yields. A decoded frame's index is computed from its presentation
timestamp, ``round((pts - stream.start_time) * time_base * fps)`` (:class:`StreamClock`), so
seeking (which lands on the keyframe at or before a timestamp) and B-frames (decode order !=
presentation order; PyAV hands frames out in presentation order) do not shift the result.
Containers are opened per call inside ``with`` blocks, so nothing is shared across forked
DataLoader workers and nothing accumulates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Tuple

import av

__all__ = ["DecodeError", "VideoMeta", "probe_video", "keyframe_indices", "count_decodable_frames", "FrameScan",
           "scan_frames", "open_video", "StreamClock", "AV_ERRORS"]

#: Codec/container errors PyAV raises for corrupt or non-video input.
AV_ERRORS = (av.FFmpegError, ValueError, IndexError, EOFError, OSError, UnicodeDecodeError)

av.logging.set_level(av.logging.PANIC)  # corrupt packets are reported through DecodeError, not stderr spam


class DecodeError(RuntimeError):
    """A video could not be opened or decoded. ``path`` names the file."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode video {path!r}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoMeta:
    """Basic metadata of a video stream. ``num_frames`` is a real count, never a guess of 0."""

    num_frames: int
    fps: float
    width: int
    height: int


def _is_image_format(name: str) -> bool:
    """FFmpeg's still-image demuxers: ``image2`` and the ``<codec>_pipe`` family (png_pipe, ...)."""
    return any(n == "image2" or n.endswith("_pipe") for n in (name or "").split(","))


def open_video(path: str):
    """The container of ``path``, open for reading, with a video stream; ``DecodeError`` naming the
    file when it is absent, empty, a directory, not a container, or a still image."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise DecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise DecodeError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, "r")
    except AV_ERRORS as e:
        raise DecodeError(path, f"not a readable container ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError(path, "no video stream")
    fmt = container.format.name
    if _is_image_format(fmt):  # FFmpeg probes content, so a PNG renamed .mp4 opens as png_pipe
        codec = container.streams.video[0].codec_context.name
        container.close()
        raise DecodeError(path, f"an image file ({codec} image, FFmpeg format {fmt}), not a video; "
                                f"a still image renamed to {os.path.splitext(path)[1] or 'a video name'}?")
    return container


def _stream_fps(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return Fraction(25)


class StreamClock:
    """pts <-> frame index conversion for one stream."""

    def __init__(self, stream):
        self.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        self.fps = _stream_fps(stream)
        self.start = stream.start_time if stream.start_time is not None else 0
        self._scale = float(self.time_base * self.fps)

    def index(self, pts: int) -> int:
        return int(round((pts - self.start) * self._scale))

    def pts(self, index: int) -> int:
        return self.start + int(Fraction(index) / self.fps / self.time_base)


def probe_video(path: str, validate: bool = True) -> VideoMeta:
    """Frame count, fps and size of the first video stream of ``path``.

    The container's frame count is not trusted (it is 0 or missing for many files and
    stale for truncated ones): frames are counted from the demuxed packets, which is cheap
    (no decoding). A file with clearly fewer packets than its header lists (more than 2% or
    one frame short) is reported as truncated. With ``validate`` the first frame is also decoded, so corrupt or non-video
    files fail here rather than in a training worker. Raises ``DecodeError`` naming the file.
    """
    with open_video(path) as container:
        stream = container.streams.video[0]
        clock = StreamClock(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        last, count = -1, 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                if packet.pts is not None:
                    last = max(last, clock.index(packet.pts))
            num_frames = max(count, last + 1)
            if validate:
                container.seek(clock.start, stream=stream, backward=True, any_frame=False)
                frame = next(container.decode(stream), None)
                if frame is None:
                    raise DecodeError(path, "no decodable frame")
                width, height = frame.width, frame.height
        except DecodeError:
            raise
        except (AV_ERRORS + (StopIteration,)) as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
        header = int(stream.frames or 0)
    if 0 < num_frames < header - max(1, 0.02 * header):
        raise DecodeError(path, f"truncated: the container lists {header} frames but only {num_frames} are present")
    if num_frames <= 0:
        raise DecodeError(path, "no video frames")
    if width <= 0 or height <= 0:
        raise DecodeError(path, f"invalid frame size {width}x{height}")
    return VideoMeta(num_frames=int(num_frames), fps=float(clock.fps), width=int(width), height=int(height))


def keyframe_indices(path: str) -> list:
    """Sorted presentation indices of the keyframes of ``path`` (demuxed packets, no decoding)."""
    out = set()
    with open_video(path) as container:
        stream = container.streams.video[0]
        clock = StreamClock(stream)
        try:
            for packet in container.demux(stream):
                if packet.size and packet.is_keyframe and packet.pts is not None:
                    out.add(clock.index(packet.pts))
        except AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
    return sorted(out)


def count_decodable_frames(path: str) -> int:
    """How many frames a full decode of ``path`` yields (:func:`scan_frames`' ``decoded``);
    ``DecodeError`` if the file cannot be opened or decoding fails."""
    return scan_frames(path).decoded


@dataclass(frozen=True)
class FrameScan:
    """What a full decode of a video found: ``decoded`` frames and the presentation indices of
    those the decoder flagged corrupt (``corrupt``, sorted)."""

    decoded: int
    corrupt: Tuple[int, ...]


def scan_frames(path: str) -> FrameScan:
    """Decode every frame (no colour conversion), counting the frames and noting the corrupt
    ones (``frame.is_corrupt``); ``DecodeError`` if the file cannot be opened or decoding fails.
    Used by ``p3d-prescan --full``."""
    n, corrupt = 0, []
    with open_video(path) as container:
        stream = container.streams.video[0]
        clock = StreamClock(stream)
        try:
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    corrupt.append(clock.index(frame.pts) if frame.pts is not None else n)
                n += 1
        except AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__} after {n} frames: {e}") from None
    return FrameScan(decoded=n, corrupt=tuple(sorted(corrupt)))
