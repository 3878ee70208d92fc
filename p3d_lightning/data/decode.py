"""Video decoding and encoding with PyAV. The only module in the package that touches codecs.

Frame indices are presentation-order indices: frame ``i`` is the ``i``-th frame a full
sequential decode yields. A decoded frame's index is computed from its presentation
timestamp, ``round((pts - stream.start_time) * time_base * fps)``, so seeking (which lands on
the keyframe at or before a timestamp) and B-frames (decode order != presentation order;
PyAV hands frames out in presentation order) do not shift the result.

``read_frames`` seeks to the keyframe at or before the first wanted frame and decodes forward
only as far as the last wanted frame, converting just the wanted frames to RGB (optionally
resized inside libswscale, so full-size frames are never materialised as arrays). Containers
are opened per call inside ``with`` blocks, so nothing is shared across forked DataLoader
workers and nothing accumulates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence, Tuple, Union

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch

__all__ = [
    "DecodeError",
    "VideoMeta",
    "probe_video",
    "read_frames",
    "read_all_frames",
    "write_video",
    "output_size",
    "count_decodable_frames",
    "FrameScan",
    "scan_frames",
]

Size = Union[None, int, Tuple[int, int], Sequence[int]]

# Codec/container errors PyAV raises for corrupt or non-video input.
_AV_ERRORS = (av.FFmpegError, ValueError, IndexError, EOFError, OSError, UnicodeDecodeError)

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


def _is_image_format(name: str) -> bool:
    """FFmpeg's still-image demuxers: ``image2`` and the ``<codec>_pipe`` family (png_pipe, ...)."""
    return any(n == "image2" or n.endswith("_pipe") for n in (name or "").split(","))


def _open(path: str):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise DecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise DecodeError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, "r")
    except _AV_ERRORS as e:
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


class _Clock:
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
    with _open(path) as container:
        stream = container.streams.video[0]
        clock = _Clock(stream)
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
        except (_AV_ERRORS + (StopIteration,)) as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
        header = int(stream.frames or 0)
    if 0 < num_frames < header - max(1, 0.02 * header):
        raise DecodeError(path, f"truncated: the container lists {header} frames but only {num_frames} are present")
    if num_frames <= 0:
        raise DecodeError(path, "no video frames")
    if width <= 0 or height <= 0:
        raise DecodeError(path, f"invalid frame size {width}x{height}")
    return VideoMeta(num_frames=int(num_frames), fps=float(clock.fps), width=int(width), height=int(height))


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
    with _open(path) as container:
        stream = container.streams.video[0]
        if thread_type:
            stream.thread_type = thread_type
        clock = _Clock(stream)
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
        except _AV_ERRORS as e:
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
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                frames.append(_to_array(frame, output_size(frame.width, frame.height, size)))
                if num_frames is not None and len(frames) >= num_frames:
                    break
        except _AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
    if not frames:
        raise DecodeError(path, "no decodable frame")
    return torch.from_numpy(np.stack(frames))


def count_decodable_frames(path: str) -> int:
    """Decode every frame (no colour conversion) and return how many decoded; ``DecodeError``
    if the file cannot be opened or decoding fails. Used by ``p3d-prescan --full``."""
    n = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            for _ in container.decode(stream):
                n += 1
        except _AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__} after {n} frames: {e}") from None
    return n


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
    with _open(path) as container:
        stream = container.streams.video[0]
        clock = _Clock(stream)
        try:
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    corrupt.append(clock.index(frame.pts) if frame.pts is not None else n)
                n += 1
        except _AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__} after {n} frames: {e}") from None
    return FrameScan(decoded=n, corrupt=tuple(sorted(corrupt)))


def write_video(
    path: str,
    frames: Union[np.ndarray, torch.Tensor],
    fps: int = 25,
    codec: str = "mpeg4",
    gop_size: int = 12,
    bit_rate: Optional[int] = None,
    bframes: int = 0,
) -> None:
    """Encode uint8 RGB ``frames`` ``(T, H, W, 3)`` to ``path``.

    ``codec="mpeg4"`` in an .avi gives an Xvid-like stream as UCF101/HMDB51 ship;
    ``codec="libx264"`` in an .mp4 gives an H.264 stream as Kinetics ships (``bframes`` sets
    the B-frame count). ``gop_size`` is the keyframe interval. ``bit_rate`` (bit/s) selects
    rate control; ``None`` encodes at a constant high quality (mpeg4 qscale, x264 crf 23).
    """
    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if width % 2 or height % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop_size
        if codec == "mpeg4":
            stream.codec_tag = "XVID"
            if bit_rate:
                stream.codec_context.bit_rate = int(bit_rate)
            else:
                stream.codec_context.qscale = 2  # constant quantiser, like `ffmpeg -q:v 2`
            stream.options = {"bf": str(int(bframes))}
        elif codec == "libx264":
            opts = {"bf": str(int(bframes)), "preset": "veryfast", "keyint_min": str(gop_size), "sc_threshold": "0"}
            if bit_rate:
                stream.codec_context.bit_rate = int(bit_rate)
            else:
                opts["crf"] = "23"
            stream.options = opts
        elif bit_rate:
            stream.codec_context.bit_rate = int(bit_rate)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------------------------
# Several clips from one decoding pass, keyframe positions, and re-encoding (p3d-prep).

__all__ += ["read_clips", "keyframe_indices", "transcode_video", "TranscodeResult"]


def keyframe_indices(path: str) -> list:
    """Sorted presentation indices of the keyframes of ``path`` (demuxed packets, no decoding)."""
    out = set()
    with _open(path) as container:
        stream = container.streams.video[0]
        clock = _Clock(stream)
        try:
            for packet in container.demux(stream):
                if packet.size and packet.is_keyframe and packet.pts is not None:
                    out.add(clock.index(packet.pts))
        except _AV_ERRORS as e:
            raise DecodeError(path, f"{type(e).__name__}: {e}") from None
    return sorted(out)


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


@dataclass(frozen=True)
class TranscodeResult:
    """What ``transcode_video`` wrote: ``frames`` written (``filled`` of them repeat the previous
    frame over a timestamp gap, ``dropped`` decoded frames shared an index with the one before),
    the output ``fps`` and size, and the source's keyframe interval is irrelevant afterwards."""

    frames: int
    filled: int
    dropped: int
    fps: float
    width: int
    height: int


_CONTAINER_FORMATS = {".avi": "avi", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                      ".webm": "matroska", ".mpg": "matroska", ".mpeg": "matroska"}


def _even_size(width: int, height: int, short_side: Optional[int]) -> Tuple[int, int]:
    """``(height, width)`` with the short side ``short_side`` (never upscaled), both even."""
    scale = 1.0 if short_side is None else min(1.0, short_side / min(width, height))
    return (max(2, 2 * int(round(height * scale / 2))), max(2, 2 * int(round(width * scale / 2))))


def transcode_video(
    src: str,
    dst: str,
    short_side: Optional[int] = None,
    *,
    codec: str = "mpeg4",
    gop_size: int = 8,
    quality: int = 3,
    preset: str = "veryfast",
    threads: int = 1,
) -> TranscodeResult:
    """Re-encode ``src`` into ``dst`` for fast random access: short side ``short_side`` (never
    upscaled; even sizes), a keyframe exactly every ``gop_size`` frames, no B-frames, same fps,
    video only (audio is dropped).

    Frame ``i`` of the output is frame ``i`` as ``read_frames`` indexes the source (from
    timestamps): a timestamp gap is filled by repeating the previous frame, so indices keep
    their meaning. ``codec``: ``"mpeg4"`` (Xvid-like; ``quality`` is the qscale, 2 best .. 31)
    or ``"libx264"`` (``quality`` is the CRF, 0 lossless .. 51; ``tune=fastdecode``: no CABAC,
    no deblocking; not into .avi, whose muxer shifts x264's timestamps by one frame). The
    container follows ``dst``'s extension (an ``.avi`` stays an ``.avi``, so split files still
    name it); ``.webm`` and ``.mpg`` get Matroska content. Raises ``DecodeError`` for a source
    that cannot be decoded.
    """
    ext = os.path.splitext(dst)[1].lower()
    fmt = _CONTAINER_FORMATS.get(ext, "matroska")
    if codec not in ("libx264", "mpeg4"):
        raise ValueError(f"transcode_video: codec must be 'libx264' or 'mpeg4', got {codec!r}")
    if gop_size < 1:
        raise ValueError(f"transcode_video: gop_size must be >= 1, got {gop_size}")
    if codec == "libx264" and fmt == "avi":
        raise ValueError(f"transcode_video: libx264 into an .avi ({dst!r}) shifts the timestamps by one frame; "
                         "use codec='mpeg4' or an .mp4/.mkv name")
    reformatter = VideoReformatter()
    written = filled = dropped = 0
    with _open(src) as inp:
        istream = inp.streams.video[0]
        clock = _Clock(istream)
        rate = clock.fps if clock.fps.denominator <= 1001 else Fraction(float(clock.fps)).limit_denominator(1001)
        out_hw = None
        try:
            with av.open(os.fspath(dst), "w", format=fmt) as out:
                ostream = None
                prev = None
                for frame in inp.decode(istream):
                    if frame.pts is None:
                        continue
                    idx = clock.index(frame.pts)
                    if idx < written:
                        dropped += 1
                        continue
                    if ostream is None:
                        out_hw = _even_size(frame.width, frame.height, short_side)
                        ostream = out.add_stream(codec, rate=rate)
                        ostream.height, ostream.width = out_hw
                        ostream.pix_fmt = "yuv420p"
                        ostream.gop_size = int(gop_size)
                        ostream.codec_context.thread_count = int(threads)
                        if codec == "libx264":
                            ostream.options = {"bf": "0", "preset": preset, "tune": "fastdecode", "crf": str(int(quality)),
                                               "keyint_min": str(int(gop_size)), "sc_threshold": "0",
                                               "g": str(int(gop_size))}
                        else:
                            if fmt == "avi":
                                ostream.codec_tag = "XVID"
                            # a constant quantiser: qscale alone is ignored (frames carry quality 0 and
                            # the encoder clips that to qmin), so pin qmin = qmax = quality
                            ostream.codec_context.qscale = int(quality)
                            ostream.options = {"bf": "0", "g": str(int(gop_size)), "qmin": str(int(quality)),
                                               "qmax": str(int(quality))}
                    small = reformatter.reformat(frame, format="yuv420p", width=out_hw[1], height=out_hw[0],
                                                 interpolation="BILINEAR")
                    while written < idx and prev is not None:  # gap in the timestamps: hold the frame
                        _encode(ostream, out, prev, written)
                        written += 1
                        filled += 1
                    _encode(ostream, out, small, written)
                    written += 1
                    prev = small
                if ostream is None:
                    raise DecodeError(src, "no decodable frame")
                for packet in ostream.encode():
                    out.mux(packet)
        except DecodeError:
            raise
        except _AV_ERRORS as e:
            raise DecodeError(src, f"{type(e).__name__} after {written} frames: {e}") from None
    return TranscodeResult(frames=written, filled=filled, dropped=dropped, fps=float(rate),
                           width=out_hw[1], height=out_hw[0])


def _encode(ostream, container, frame, index: int) -> None:
    frame.pts = index
    frame.time_base = 1 / Fraction(ostream.average_rate)
    frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: the encoder places keyframes (every gop_size), not the source
    for packet in ostream.encode(frame):
        container.mux(packet)
