"""``p3d-bench-decode``: random 16-frame clip decoding speed on one core, seek vs. naive.

By default it writes two test videos into a temporary folder: a UCF101-sized 320x240 mpeg4
(Xvid-like) .avi at 25 fps with a keyframe every 12 frames, 7 s long (the UCF101 mean), and a
Kinetics-like 340x256 H.264 .mp4 with B-frames, 10 s, keyframe every 60 frames. Content: a
textured background panning under the synthetic dataset's moving objects, encoded at UCF101's
mean bitrate (540 kbit/s; 800 kbit/s for the .mp4). Or pass your own files with ``--videos``.

For each video it times the same random clips read with
  * ``seek``: ``read_frames``: seek to the keyframe before the clip, decode forward to its last
    frame, convert only the clip's frames to RGB;
  * ``naive``: decode every frame from the start up to the clip's last frame into RGB arrays
    and keep the clip (``read_all_frames(path, num_frames=last + 1)[indices]``), the way a
    decode-everything loader works;
  * ``naive-lite``: a stronger baseline: decode from the start without seeking but convert only
    the clip's frames (``read_frames(..., seek=False)``);
  * ``seek+AUTO`` (only with ``--thread-auto``): as ``seek`` with ``thread_type="AUTO"``; it
    hung on the H.264 file on this machine (frame-threaded decoder stopped early), so it is off
    by default;
  * ``seek+resize``: as ``seek`` with resizing to 182x242 inside the decoder.
Everything runs in this process with ``torch.set_num_threads(1)``.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from typing import List, Optional, Sequence

import numpy as np
import torch

from .decode import probe_video, read_all_frames, read_frames, write_video
from .synthetic import render_video, sample_params

__all__ = ["make_benchmark_video", "bench_video", "main"]


def make_benchmark_video(path: str, height: int, width: int, seconds: float, fps: int = 25,
                         codec: str = "mpeg4", gop_size: int = 12, bframes: int = 0, bit_rate: int = 540_000,
                         seed: int = 0) -> None:
    """Write a test video: a noisy texture panning 2 px/frame with a moving object on top,
    encoded at ``bit_rate`` (UCF101 averages about 540 kbit/s: 6.5 GB for 27 hours)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    params = sample_params(rng, 0, height, width, n)
    frames = render_video(params)  # (T, H, W, 3)
    tex = rng.integers(0, 256, (height // 2 + 1, (width + 2 * n) // 2 + 1, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 2, 0), 2, 1)[:height]  # fine texture: about UCF101's bitrate
    for t in range(n):
        bg = tex[:, 2 * t:2 * t + width]
        frames[t] = (0.7 * frames[t] + 0.3 * bg).astype(np.uint8)
    write_video(path, frames, fps=fps, codec=codec, gop_size=gop_size, bit_rate=bit_rate, bframes=bframes)


def bench_video(path: str, num_clips: int = 100, clip_len: int = 16, seed: int = 0,
                thread_auto: bool = False) -> dict:
    """clips/s of each method on the same ``num_clips`` random clips of ``path``.

    Methods are interleaved clip by clip, so load from other processes hits them alike.
    """
    meta = probe_video(path)
    rng = random.Random(seed)
    clips: List[List[int]] = []
    for _ in range(num_clips):
        s = rng.randint(0, max(0, meta.num_frames - clip_len))
        clips.append(list(range(s, s + clip_len)))
    methods = {
        "seek": lambda c: read_frames(path, c),
        "naive": lambda c: read_all_frames(path, num_frames=c[-1] + 1)[c],
        "naive-lite": lambda c: read_frames(path, c, seek=False),
        "seek+resize": lambda c: read_frames(path, c, size=(182, 242)),
    }
    if thread_auto:  # off by default: hung on the H.264 .mp4 here (frame threads + early stop)
        methods["seek+AUTO"] = lambda c: read_frames(path, c, thread_type="AUTO")
    for fn in methods.values():
        fn(clips[0])  # warm up (page cache, codec init)
    spent = dict.fromkeys(methods, 0.0)
    for c in clips:
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn(c)
            spent[name] += time.perf_counter() - t0
    res = {"path": path, "frames": meta.num_frames, "size": f"{meta.width}x{meta.height}",
           "kbps": os.path.getsize(path) * 8 / 1000 / (meta.num_frames / meta.fps)}
    res.update({name: len(clips) / t for name, t in spent.items()})
    return res


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the benchmark and print a Markdown table."""
    ap = argparse.ArgumentParser(prog="p3d-bench-decode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", nargs="*", default=None, help="benchmark these files instead of generated ones")
    ap.add_argument("--num-clips", type=int, default=100)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=7.0, help="length of the generated .avi (UCF101 mean ~7 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--thread-auto", action="store_true", help="also time thread_type='AUTO' (may hang on H.264)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        videos = a.videos
        if not videos:
            avi, mp4 = os.path.join(tmp, "ucf_like_320x240.avi"), os.path.join(tmp, "kinetics_like_340x256.mp4")
            make_benchmark_video(avi, 240, 320, a.seconds, codec="mpeg4", gop_size=12, seed=a.seed)
            make_benchmark_video(mp4, 256, 340, 10.0, codec="libx264", gop_size=60, bframes=3,
                                 bit_rate=800_000, seed=a.seed)
            videos = [avi, mp4]
        print(f"{a.num_clips} random {a.clip_len}-frame clips per video, one thread "
              f"(torch.set_num_threads(1), single-threaded decoder unless noted); clips/s\n")
        auto = " seek + thread_type AUTO |" if a.thread_auto else ""
        print("| video | frames | kbit/s | seek | naive | seek / naive | naive-lite | seek / naive-lite "
              f"| seek + resize 182x242 |{auto}")
        print("| --- " * (9 + a.thread_auto) + "|")
        for v in videos:
            r = bench_video(v, a.num_clips, a.clip_len, a.seed, thread_auto=a.thread_auto)
            print(f"| {os.path.basename(v)} ({r['size']}) | {r['frames']} | {r['kbps']:.0f} | {r['seek']:.1f} | "
                  f"{r['naive']:.1f} | {r['seek'] / r['naive']:.1f}x | {r['naive-lite']:.1f} | "
                  f"{r['seek'] / r['naive-lite']:.1f}x | {r['seek+resize']:.1f} |"
                  + (f" {r['seek+AUTO']:.1f} |" if a.thread_auto else ""), flush=True)


if __name__ == "__main__":
    main()
