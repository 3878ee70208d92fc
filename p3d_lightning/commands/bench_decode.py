"""``p3d-bench-decode``: decode speed per core of raw and prepared files, and the cores that feed a
GPU, as Markdown tables (what is measured, and how: :mod:`p3d_lightning.data.bench_decode`)."""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Optional, Sequence

import torch

from p3d_lightning.data import bench_decode
from p3d_lightning.data.bench_decode import (THREAD_TYPES, TRAIN_SIZE, bench_prepared, bench_threads, bench_video,
                                             cores_needed, generated_videos)
from p3d_lightning.data.encode import transcode_video
from p3d_lightning.data.prep import DEFAULT_QUALITY, PrepSettings
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def _seek_table(videos: Sequence[str], a) -> None:
    print(f"\n{a.num_clips} random {a.clip_len}-frame clips per video, seek vs. naive; clips/s\n")
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


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the benchmark and print Markdown tables."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    ap = argparse.ArgumentParser(prog="p3d-bench-decode", description=bench_decode.__doc__.split("\n\n")[0])
    ap.add_argument("--videos", nargs="*", default=None, help="benchmark these files instead of generated ones")
    ap.add_argument("--num-clips", type=int, default=100, help="random clips per video")
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--eval-clips", type=int, default=20, help="clips per video of the evaluation protocol")
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=7.0, help="length of the generated .avi (UCF101 mean ~7 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gop", type=int, nargs="+", default=[PrepSettings.gop],
                    help="keyframe interval(s) of the prepared copies (several: one row each)")
    ap.add_argument("--codec", nargs="+", default=[PrepSettings.codec], choices=("mpeg4", "libx264"))
    ap.add_argument("--quality", type=int, default=None, help="prepared qscale (mpeg4) / CRF (libx264)")
    ap.add_argument("--short-side", type=int, default=PrepSettings.short_side)
    ap.add_argument("--train-rate", type=float, nargs="+", default=[1500.0, 2700.0],
                    help="training clips/s to feed (default: P3D-50 on one H200, 1500-2700)")
    ap.add_argument("--threads", action="store_true", help="also time PyAV thread types in DataLoader workers")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for --threads")
    ap.add_argument("--seek-table", action="store_true", help="also print the seek vs. naive table")
    ap.add_argument("--thread-auto", action="store_true", help="with --seek-table: also time thread_type='AUTO'")
    a = ap.parse_args(argv)
    for v in a.videos or []:
        if not os.path.isfile(v):
            ap.error(f"--videos: {os.path.abspath(v)!r} does not exist")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        videos = a.videos or generated_videos(tmp, a.seed, ucf_seconds=a.seconds)
        print(f"one process, torch.set_num_threads(1), PyAV's default decoder threading (SLICE); random {a.clip_len}-frame clips "
              f"resized to {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}: clips/s; {a.eval_clips}-clip evaluation: videos/s; "
              f"cores to feed {'-'.join(f'{r:.0f}' for r in a.train_rate)} training clips/s\n")
        print("| video | prepared as | raw clips/s | prepared clips/s | prepared / raw | eval per-clip seek | "
              "eval one pass | one pass / seek | eval one pass, prepared | prepared / seek | identical | "
              "PSNR dB | GB/h raw | GB/h prepared | cores (raw) | cores (prepared) |")
        print("| --- " * 16 + "|")
        for v in videos:
            for codec in a.codec:
                for gop in a.gop:
                    q = a.quality if a.quality is not None else DEFAULT_QUALITY[codec]
                    ext = os.path.splitext(v)[1] if codec == "mpeg4" or not v.endswith(".avi") else ".mkv"
                    out = os.path.join(tmp, f"prepared_{codec}_{gop}_{os.path.basename(v)}{ext}")
                    transcode_video(v, out, a.short_side or None, codec=codec, gop_size=gop, quality=q)
                    r = bench_prepared(v, out, a.num_clips, a.clip_len, a.eval_clips, a.eval_repeats, seed=a.seed)
                    print(f"| {os.path.basename(v)} ({r['size']}, {r['frames']} frames) | {codec} q{q} GOP {gop} "
                          f"{r['prepared_size']} | {r['raw']:.1f} | {r['prepared']:.1f} | "
                          f"{r['prepared'] / r['raw']:.1f}x | {r['eval_seek']:.2f} | {r['eval_once']:.2f} | "
                          f"{r['eval_once'] / r['eval_seek']:.1f}x | {r['eval_once_prepared']:.2f} | "
                          f"{r['eval_once_prepared'] / r['eval_seek']:.1f}x | {'yes' if r['eval_identical'] else 'NO'} | "
                          f"{r['psnr']:.1f} | {r['raw_gb_h']:.2f} | {r['prepared_gb_h']:.2f} | "
                          f"{cores_needed(a.train_rate, r['raw'])} | {cores_needed(a.train_rate, r['prepared'])} |",
                          flush=True)
        if a.threads:
            print(f"\nPyAV thread_type in {a.workers} DataLoader workers, random clips resized to "
                  f"{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, clips/s per core (workers on {os.cpu_count()} cores)\n")
            print("| video | " + " | ".join(THREAD_TYPES) + " |")
            print("| --- " * (1 + len(THREAD_TYPES)) + "|")
            for v in videos:
                r = bench_threads(v, max(40, a.num_clips), a.workers, a.clip_len, seed=a.seed)
                cells = [f"{x:.1f}" if isinstance(x, float) else x for x in (r[t] for t in THREAD_TYPES)]
                print(f"| {os.path.basename(v)} | " + " | ".join(cells) + " |", flush=True)
        if a.seek_table:
            _seek_table(videos, a)


if __name__ == "__main__":
    main()
