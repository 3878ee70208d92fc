"""A synthetic motion dataset that needs temporal modelling, written in the UCF101 layout.

Classes come in time-reversed pairs (move right / move left, rotate clockwise /
anticlockwise, grow / shrink, ...). A video of the second class of a pair is *exactly* a video
of the first class played backwards: both draw their random parameters (textures, colours,
positions, speeds, backgrounds) from the same distribution, and the second class renders the
frames in reverse order. So the set of frames of a video, and hence the distribution of single
frames, is identical for the two classes of a pair. Each pair has its own object shape (the
appearance cue), so a frame-level model can find the pair but not the direction: its ceiling
is exactly 50%, while a model that sees motion can approach 100%. (Only lossy compression,
which predicts forward in time, differs between the two directions; at the default quality
this is far below anything a classifier picks up in practice.)

Do not train on this data with horizontal flipping: a mirror image turns "move right" into
"move left" and "clockwise" into "anticlockwise", i.e. it swaps the label within the pair.
``VideoDataModule(dataset="synthetic")`` therefore turns flipping off unless asked.

Motion is large so that it survives downscaling to 64-112 px crops: translations move
4-8% of the short side per frame, rotations 8-15 degrees per frame, growth/orbits similar.
Objects wrap around the frame edges, so motion never stops within a video.

Layout (UCF101): ``root/<Class>/v_<Class>_gXX_cYY.avi`` (mpeg4/Xvid in AVI, keyframe every 12
frames), ``root/classInd.txt`` (1-based ids), ``root/trainlist01.txt`` (path + 1-based label),
``root/testlist01.txt`` (path). Groups ``gXX`` never mix train and test: like UCF101 split 1,
the first groups are the test set. Class ``2p`` and ``2p + 1`` (0-based) form pair ``p``.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .sampling import derive_seed

__all__ = [
    "PAIRS",
    "MotionParams",
    "class_names",
    "pair_of",
    "sample_params",
    "render_video",
    "generate_synthetic_dataset",
]

# (forward class, reversed class, motion, shape). Forward = the motion as rendered in time order.
PAIRS: Tuple[Tuple[str, str, str, str], ...] = (
    ("MoveRight", "MoveLeft", "translate_x", "disk"),
    ("RotateClockwise", "RotateAnticlockwise", "rotate", "square"),
    ("Grow", "Shrink", "scale", "ring"),
    ("MoveDown", "MoveUp", "translate_y", "triangle"),
    ("OrbitClockwise", "OrbitAnticlockwise", "orbit", "ellipse"),
    ("MoveDownRight", "MoveUpLeft", "translate_xy", "cross"),
)


def class_names(num_pairs: int = 4) -> List[str]:
    """Class names in label order: ``[pair0 forward, pair0 reversed, pair1 forward, ...]``."""
    if not 1 <= num_pairs <= len(PAIRS):
        raise ValueError(f"num_pairs must be 1..{len(PAIRS)}, got {num_pairs}")
    return [name for p in PAIRS[:num_pairs] for name in p[:2]]


def pair_of(label: int) -> int:
    """The label of the time-reversed partner class."""
    return label ^ 1


@dataclass(frozen=True)
class MotionParams:
    """Everything that defines one synthetic video (class-independent within a pair)."""

    pair: int
    height: int
    width: int
    num_frames: int
    bg_colors: Tuple[Tuple[float, ...], Tuple[float, ...]]
    bg_seed: int
    fg_colors: Tuple[Tuple[float, ...], Tuple[float, ...]]
    texture: str  # "stripes" | "checker"
    tex_freq: float
    tex_angle: float
    cx: float  # centre, pixels
    cy: float
    radius: float  # object radius, pixels
    angle0: float  # radians
    speed: float  # px/frame (translate, orbit radius px for orbit), rad/frame (rotate), unused (scale)
    ang_speed: float  # rad/frame for orbit
    period: float  # frames per growth cycle (scale)
    phase: float  # [0, 1)


def sample_params(rng: np.random.Generator, pair: int, height: int, width: int, num_frames: int) -> MotionParams:
    """Random parameters for a video of ``pair`` (the same distribution for both directions)."""
    s = min(height, width)
    dark_bg = rng.random() < 0.5
    lo, hi = (0.0, 0.4) if dark_bg else (0.6, 1.0)
    flo, fhi = (0.6, 1.0) if dark_bg else (0.0, 0.4)
    bg = tuple(tuple(float(v) for v in rng.uniform(lo, hi, 3)) for _ in range(2))
    fg = tuple(tuple(float(v) for v in rng.uniform(flo, fhi, 3)) for _ in range(2))
    motion = PAIRS[pair][2]
    radius = float(rng.uniform(0.18, 0.28) * s)
    speed, ang_speed = 0.0, 0.0
    if motion in ("translate_x", "translate_y", "translate_xy"):
        speed = float(rng.uniform(0.04, 0.08) * s)
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    elif motion == "rotate":
        speed = float(np.deg2rad(rng.uniform(8, 15)))
        cx, cy = float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))
    elif motion == "scale":
        cx = float(rng.uniform(0.45 * s, width - 0.45 * s))
        cy = float(rng.uniform(0.45 * s, height - 0.45 * s))
    else:  # orbit: speed is the orbit radius
        radius = float(rng.uniform(0.22, 0.3) * s)
        speed = float(rng.uniform(0.15, 0.25) * s)
        ang_speed = float(np.deg2rad(rng.uniform(10, 18)))
        m = speed + radius
        cx, cy = float(rng.uniform(m, max(m, width - m))), float(rng.uniform(m, max(m, height - m)))
    return MotionParams(
        pair=pair, height=height, width=width, num_frames=num_frames,
        bg_colors=bg, bg_seed=int(rng.integers(2**31)), fg_colors=fg,
        texture=str(rng.choice(["stripes", "checker"])), tex_freq=float(rng.uniform(1.0, 2.5)),
        tex_angle=float(rng.uniform(0, np.pi)), cx=cx, cy=cy, radius=radius,
        angle0=float(rng.uniform(0, 2 * np.pi)), speed=speed, ang_speed=ang_speed,
        period=float(rng.uniform(12, 20)), phase=float(rng.uniform(0, 1)),
    )


def _background(p: MotionParams) -> np.ndarray:
    rng = np.random.default_rng(p.bg_seed)
    gh, gw = 4, 5
    grid = rng.random((gh, gw))
    # bilinear upsampling of a coarse random grid: a smooth blob pattern
    ys = np.linspace(0, gh - 1, p.height)
    xs = np.linspace(0, gw - 1, p.width)
    y0, x0 = np.floor(ys).astype(int).clip(0, gh - 2), np.floor(xs).astype(int).clip(0, gw - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = (grid[y0][:, x0] * (1 - fy) * (1 - fx) + grid[y0 + 1][:, x0] * fy * (1 - fx)
         + grid[y0][:, x0 + 1] * (1 - fy) * fx + grid[y0 + 1][:, x0 + 1] * fy * fx)
    c0, c1 = np.array(p.bg_colors[0]), np.array(p.bg_colors[1])
    return c0 * (1 - g[..., None]) + c1 * g[..., None]  # (H, W, 3) float in [0, 1]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "disk":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    if shape == "triangle":  # pointing up, circumradius 1
        return (v <= 0.5) & (v >= math.sqrt(3) * np.abs(u) - 1.0)
    if shape == "ellipse":  # wide, fixed orientation: never looks like the rotating square
        return u * u + 4.0 * v * v <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def _state(p: MotionParams, t: float) -> Tuple[float, float, float, float]:
    """(cx, cy, angle, radius) at time t of the forward motion."""
    motion = PAIRS[p.pair][2]
    # Only the rotating pair turns its object; the others keep the canonical orientation so
    # that each pair's shape stays a clean appearance cue.
    cx, cy, ang, r = p.cx, p.cy, 0.0, p.radius
    if motion == "translate_x":
        cx = (p.cx + p.speed * t) % p.width
    elif motion == "translate_y":
        cy = (p.cy + p.speed * t) % p.height
    elif motion == "translate_xy":
        cx = (p.cx + p.speed * t / math.sqrt(2)) % p.width
        cy = (p.cy + p.speed * t / math.sqrt(2)) % p.height
    elif motion == "rotate":  # image y points down: increasing angle turns clockwise on screen
        ang = p.angle0 + p.speed * t
    elif motion == "scale":  # sawtooth growth between 0.12 and 0.45 of the short side
        s = min(p.height, p.width)
        frac = (p.phase + t / p.period) % 1.0
        r = (0.12 + 0.33 * frac) * s
    elif motion == "orbit":  # centre on a circle, clockwise on screen
        a = p.angle0 + p.ang_speed * t
        cx, cy = p.cx + p.speed * math.cos(a), p.cy + p.speed * math.sin(a)
    return cx, cy, ang, r


def render_video(p: MotionParams, reverse: bool = False) -> np.ndarray:
    """Frames uint8 ``(T, H, W, 3)`` of the forward motion, or of its time reversal.

    ``render_video(p, reverse=True)`` is the video of the partner class and equals
    ``render_video(p)[::-1]``.
    """
    bg = (_background(p) * 255.0 + 0.5).astype(np.uint8)
    shape = PAIRS[p.pair][3]
    ys, xs = np.mgrid[0:p.height, 0:p.width].astype(np.float32) + np.float32(0.5)
    c0 = np.array(p.fg_colors[0], np.float32) * 255.0
    c1 = np.array(p.fg_colors[1], np.float32) * 255.0
    w = np.float32(p.tex_freq * 2.0 * math.pi)
    out = np.empty((p.num_frames, p.height, p.width, 3), np.uint8)
    for i in range(p.num_frames):
        t = p.num_frames - 1 - i if reverse else i
        cx, cy, ang, r = _state(p, t)
        dx = (xs - np.float32(cx - p.width / 2)) % p.width - np.float32(p.width / 2)  # wrap-around offsets
        dy = (ys - np.float32(cy - p.height / 2)) % p.height - np.float32(p.height / 2)
        ca, sa = np.float32(math.cos(ang) / r), np.float32(math.sin(ang) / r)
        u = ca * dx + sa * dy  # object coordinates: rotate by -angle, scale by 1/radius
        v = ca * dy - sa * dx
        mask = _shape_mask(shape, u, v)
        um, vm = u[mask], v[mask]  # the texture lives in object coordinates: it moves with the object
        if p.texture == "stripes":
            tex = 0.5 + 0.5 * np.sin(w * (um * np.float32(math.cos(p.tex_angle)) + vm * np.float32(math.sin(p.tex_angle))))
        else:
            tex = (np.sin(w * um) * np.sin(w * vm) > 0).astype(np.float32)
        frame = bg.copy()
        frame[mask] = (c0 + (c1 - c0) * tex[:, None] + 0.5).astype(np.uint8)
        out[i] = frame
    return out


def _video_name(cls: str, group: int, clip: int) -> str:
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def _make_video(job) -> None:
    # imported here, not at the top: rendering and `p3d-synth --help` need neither PyAV nor torch
    from .encode import write_video

    path, seed_values, pair, reverse, size, num_frames, fps, gop = job
    rng = np.random.default_rng(derive_seed(*seed_values))
    params = sample_params(rng, pair, size[0], size[1], num_frames)
    write_video(path, render_video(params, reverse=reverse), fps=fps, codec="mpeg4", gop_size=gop)


def generate_synthetic_dataset(
    root: str,
    num_pairs: int = 4,
    videos_per_class: int = 48,
    clips_per_group: int = 4,
    test_fraction: float = 0.25,
    size: Sequence[int] = (120, 160),
    num_frames: int = 50,
    fps: int = 25,
    gop_size: int = 12,
    seed: int = 0,
    num_workers: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write the synthetic motion dataset under ``root`` in the UCF101 layout (see module doc).

    ``size`` is ``(height, width)`` (even numbers; UCF101 is (240, 320)), ``num_frames`` per
    video at ``fps``. Each class gets ``videos_per_class`` videos in groups of
    ``clips_per_group``; the first ``round(test_fraction * groups)`` groups (at least one) are
    the test set. Deterministic: the same arguments give the same frames. The split files are
    written last, so a present ``classInd.txt`` marks a complete dataset; an existing dataset
    is left alone unless ``overwrite``. ``num_workers`` processes encode in parallel
    (default: CPU count, at most 4). Returns a summary dict (classes, counts, seconds).
    """
    t0 = time.perf_counter()
    h, w = int(size[0]), int(size[1])
    if h % 2 or w % 2 or h < 16 or w < 16:
        raise ValueError(f"size must be even (height, width) >= 16, got {tuple(size)}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    classes = class_names(num_pairs)
    num_groups = math.ceil(videos_per_class / clips_per_group)
    if num_groups < 2:
        raise ValueError(f"need at least 2 groups (train and test); got videos_per_class={videos_per_class}, "
                         f"clips_per_group={clips_per_group}")
    num_test_groups = min(num_groups - 1, max(1, round(test_fraction * num_groups)))
    root = os.path.abspath(root)
    marker = os.path.join(root, "classInd.txt")
    if os.path.exists(marker) and not overwrite:
        return {"root": root, "classes": classes, "generated": False, "seconds": 0.0}
    if overwrite:
        for f in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
            if os.path.exists(os.path.join(root, f)):
                os.remove(os.path.join(root, f))
        for c in classes:
            shutil.rmtree(os.path.join(root, c), ignore_errors=True)
    jobs, train, test = [], [], []
    for label, cls in enumerate(classes):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for k in range(videos_per_class):
            group, clip = k // clips_per_group + 1, k % clips_per_group + 1
            rel = _video_name(cls, group, clip)
            seed_values = (seed, label, group, clip)
            jobs.append((os.path.join(root, rel), seed_values, label // 2, label % 2 == 1, (h, w),
                         num_frames, fps, gop_size))
            (test if group <= num_test_groups else train).append((rel, label))
    workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
    from . import encode  # noqa: F401  (loaded once here, so the forked encoders inherit PyAV and torch)

    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in _progress(pool.imap_unordered(_make_video, jobs, chunksize=4), len(jobs), progress):
                pass
    else:
        for job in _progress(jobs, len(jobs), progress):
            _make_video(job)
    with open(os.path.join(root, "trainlist01.txt"), "w") as f:
        f.writelines(f"{rel} {label + 1}\n" for rel, label in train)
    with open(os.path.join(root, "testlist01.txt"), "w") as f:
        f.writelines(f"{rel}\n" for rel, _ in test)
    with open(marker + ".tmp", "w") as f:
        f.writelines(f"{i + 1} {c}\n" for i, c in enumerate(classes))
    os.replace(marker + ".tmp", marker)
    return {"root": root, "classes": classes, "generated": True, "num_train": len(train),
            "num_test": len(test), "seconds": time.perf_counter() - t0}


def _progress(it, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc="synthetic videos", unit="video", disable=not enabled, leave=False)


def ensure_synthetic_dataset(root: str, generate: bool, progress: bool = True, **kwargs: Any) -> None:
    """Make sure ``root`` holds a synthetic set: write it when absent and ``generate`` (the
    data module's ``synthetic_generate``), else raise ``FileNotFoundError`` naming ``root``, so
    that a mistyped root does not silently become a new set of videos."""
    if os.path.isfile(os.path.join(root, "classInd.txt")):
        return
    if not generate:
        raise FileNotFoundError(
            f"data.root={root!r}: no synthetic set there (no classInd.txt); write one with "
            f"`p3d-synth {root}` or set data.synthetic_generate: true to generate it on first use")
    print(f"[data] generating the synthetic motion set under {os.path.abspath(root)} "
          f"(data.synthetic_generate: true)", flush=True)
    generate_synthetic_dataset(root, progress=progress, **kwargs)
