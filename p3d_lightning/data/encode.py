"""Writing videos with PyAV: ``write_video`` (frames to a file, for the synthetic set and tests)
and ``transcode_video`` (the re-encoding of ``p3d-prep``: fixed keyframe interval, no B-frames).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple, Union

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch

from .container import AV_ERRORS, DecodeError, StreamClock, open_video

__all__ = ["write_video", "transcode_video", "TranscodeResult"]


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
    with open_video(src) as inp:
        istream = inp.streams.video[0]
        clock = StreamClock(istream)
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
        except AV_ERRORS as e:
            raise DecodeError(src, f"{type(e).__name__} after {written} frames: {e}") from None
    return TranscodeResult(frames=written, filled=filled, dropped=dropped, fps=float(rate),
                           width=out_hw[1], height=out_hw[0])


def _encode(ostream, container, frame, index: int) -> None:
    frame.pts = index
    frame.time_base = 1 / Fraction(ostream.average_rate)
    frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: the encoder places keyframes (every gop_size), not the source
    for packet in ostream.encode(frame):
        container.mux(packet)
