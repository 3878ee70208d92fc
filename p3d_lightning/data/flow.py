"""Optical flow as input: ``p3d-flow`` extraction into x/y JPEG frames, and a clip dataset over them.

The released P3D-199 flow model takes TV-L1 flow, "x & y direction grey-level flow image as
two-channel image", minus 128 (official README). We store flow the usual way (TSN, denseflow):

    <flow_root>/<video path relative to root, without extension>/x_00001.jpg, y_00001.jpg, ...
                                                                  flow.json

``x_k``/``y_k`` (1-based) is the flow from frame ``k - 1`` to frame ``k`` (0-based), so a video
of N frames has N - 1 flow frames. Each component is clipped to ``[-bound, bound]`` pixels per
frame (default 20) and scaled linearly to 0-255 (0 motion -> 128): :func:`quantize_flow`.
``flow.json`` (frame count, size, method, bound) is written last, into a temporary folder that
is then renamed, so a folder with ``flow.json`` is complete and a rerun skips it (resumable);
an interrupted video leaves only a ``.tmp-*`` folder, redone next time.

Two methods: ``tvl1`` (OpenCV contrib's ``DualTVL1OpticalFlow``, what the paper's flow model
used; ``pip install opencv-contrib-python-headless``, or ``.[flow]``) and ``farneback``
(``cv2.calcOpticalFlowFarneback``, several times faster, lower quality). Extraction runs
videos in parallel processes (one OpenCV thread each) with a progress bar; videos that fail
(unreadable, too short) are reported as ``p3d-prescan`` does and listed in
``<flow_root>/p3d_flow_failures.txt`` (the quarantine format).

Reading needs no OpenCV: :class:`FlowClipDataset` decodes the JPEGs with Pillow and yields the
same dict samples as ``VideoClipDataset`` (``clip`` is ``(2, T, H, W)``), over the same split
records, so ``VideoDataModule(modality="flow")`` trains, tests and extracts with it.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .annotations import VideoRecord
from .dataset import VideoClipDataset
from .container import DecodeError, VideoMeta
from .decode import output_size, read_all_frames
from .quarantine import write_quarantine
from .sampling import derive_seed
from .transforms import resize_clip

__all__ = ["FLOW_METHODS", "FLOW_META", "FAILURES_FILENAME", "default_flow_root", "flow_dir", "quantize_flow",
           "dequantize_flow", "compute_flow", "extract_video_flow", "extract_flow", "read_flow_meta",
           "read_flow_frames", "flow_index", "FlowClipDataset"]

FLOW_METHODS = ("tvl1", "farneback")
FLOW_META = "flow.json"
FAILURES_FILENAME = "p3d_flow_failures.txt"
_CV2_HINT = "optical-flow extraction needs OpenCV with contrib: pip install opencv-contrib-python-headless"


def default_flow_root(root: str) -> str:
    """Where flow frames of ``root`` go unless told: the sibling folder ``<root>_flow``."""
    return os.path.abspath(root).rstrip(os.sep) + "_flow"


def flow_dir(flow_root: str, root: str, video_path: str) -> str:
    """The frame folder of ``video_path``: its path under ``root``, extension dropped, under ``flow_root``.

    A video outside ``root`` is keyed by its file name alone.
    """
    rel = os.path.relpath(os.path.abspath(video_path), os.path.abspath(root))
    if rel.startswith(".."):
        rel = os.path.basename(video_path)
    return os.path.join(flow_root, os.path.splitext(rel)[0])


def quantize_flow(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Float flow ``(..., 2)`` in pixels -> uint8: clip to ``[-bound, bound]``, map linearly to 0-255."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """uint8 -> float pixels (inverse of :func:`quantize_flow` up to rounding, 2 * bound / 255)."""
    return q.astype(np.float32) * (2.0 * bound / 255.0) - bound


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError(_CV2_HINT) from err
    return cv2


def _flow_fn(method: str):
    cv2 = _cv2()
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise ImportError(f"cv2 {cv2.__version__} has no optflow module (DualTVL1OpticalFlow): {_CV2_HINT}")
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    if method == "farneback":
        # OpenCV's documented example settings (pyramid 0.5, 3 levels, window 15)
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"method must be one of {FLOW_METHODS}, got {method!r}")


def compute_flow(frames: Union[np.ndarray, torch.Tensor], method: str = "tvl1") -> np.ndarray:
    """Flow between consecutive frames of uint8 RGB ``(T, H, W, 3)``: float32 ``(T - 1, H, W, 2)`` (x, y)."""
    cv2 = _cv2()
    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    flow = _flow_fn(method)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.zeros((max(len(gray) - 1, 0), *gray[0].shape, 2), np.float32) if gray else np.zeros((0, 0, 0, 2))
    for k in range(1, len(gray)):
        out[k - 1] = flow(gray[k - 1], gray[k])
    return out


def _save_jpeg(path: str, img: np.ndarray, quality: int) -> None:
    from PIL import Image

    Image.fromarray(img, mode="L").save(path, quality=quality)


def read_flow_meta(folder: str) -> Optional[dict]:
    """The ``flow.json`` of a complete flow folder, or ``None`` (absent, unfinished or unreadable)."""
    try:
        with open(os.path.join(folder, FLOW_META), encoding="utf-8") as f:
            meta = json.load(f)
        return meta if int(meta.get("num_frames", 0)) > 0 else None
    except (OSError, ValueError, TypeError):
        return None


def extract_video_flow(video_path: str, out_dir: str, method: str = "tvl1", bound: float = 20.0,
                       resize: Union[None, int, Tuple[int, int]] = None, quality: int = 95,
                       overwrite: bool = False) -> Tuple[str, Optional[dict]]:
    """Write the x/y JPEG flow frames of one video into ``out_dir``.

    Returns ``("done" | "skipped", meta)``; ``skipped`` when ``out_dir`` is already complete
    (unless ``overwrite``). Raises ``DecodeError`` for an unreadable or one-frame video.
    """
    if not overwrite and read_flow_meta(out_dir) is not None:
        return "skipped", read_flow_meta(out_dir)
    frames = read_all_frames(video_path, size=resize)  # (T, H, W, 3) uint8
    if frames.shape[0] < 2:
        raise DecodeError(video_path, f"{frames.shape[0]} decodable frame(s); flow needs at least 2")
    t0 = time.perf_counter()
    q = quantize_flow(compute_flow(frames, method), bound)  # (T - 1, H, W, 2) uint8
    seconds = time.perf_counter() - t0
    parent = os.path.dirname(out_dir.rstrip(os.sep)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = f"{out_dir.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for k in range(q.shape[0]):
        _save_jpeg(os.path.join(tmp, f"x_{k + 1:05d}.jpg"), q[k, :, :, 0], quality)
        _save_jpeg(os.path.join(tmp, f"y_{k + 1:05d}.jpg"), q[k, :, :, 1], quality)
    meta = dict(num_frames=int(q.shape[0]), height=int(q.shape[1]), width=int(q.shape[2]), method=method,
                bound=float(bound), source_frames=int(frames.shape[0]), flow_seconds=round(seconds, 3))
    with open(os.path.join(tmp, FLOW_META), "w", encoding="utf-8") as f:
        json.dump(meta, f)
    if os.path.isdir(out_dir):  # overwrite, or an old incomplete folder without flow.json
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return "done", meta


def _worker(args) -> Tuple[str, str, Optional[str], float]:
    video, out_dir, method, bound, resize, quality, overwrite = args
    _cv2().setNumThreads(1)  # parallel over videos, not inside one
    try:
        status, meta = extract_video_flow(video, out_dir, method, bound, resize, quality, overwrite)
        return video, status, None, (meta or {}).get("num_frames", 0) if status == "done" else 0
    except DecodeError as e:
        return video, "failed", e.reason, 0
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the others; it is reported
        return video, "failed", f"{type(e).__name__}: {e}", 0


def extract_flow(videos: Sequence[str], root: str, flow_root: str, method: str = "tvl1", bound: float = 20.0,
                 resize: Union[None, int, Tuple[int, int]] = None, num_workers: int = 2, quality: int = 95,
                 overwrite: bool = False, progress: bool = True) -> dict:
    """Extract flow for ``videos`` (paths under ``root``) into ``flow_root``; resumable, parallel.

    Returns ``dict(done=, skipped=, failed=[(path, reason)], flow_frames=, seconds=)``; the
    failures are also written to ``<flow_root>/p3d_flow_failures.txt``.
    """
    from tqdm.auto import tqdm

    _flow_fn(method)  # fail fast (no cv2, no contrib, bad method) before starting workers
    videos = list(dict.fromkeys(os.path.abspath(v) for v in videos))
    jobs = [(v, flow_dir(flow_root, root, v), method, float(bound), resize, quality, overwrite) for v in videos]
    todo = [j for j in jobs if overwrite or read_flow_meta(j[1]) is None]
    out = dict(done=0, skipped=len(jobs) - len(todo), failed=[], flow_frames=0)
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=out["skipped"], desc=f"flow ({method})", unit="video", disable=not progress)
    if num_workers <= 1:
        results = (_worker(j) for j in todo)
        for video, status, reason, n in results:
            _tally(out, video, status, reason, n)
            bar.update(1)
    else:
        with ProcessPoolExecutor(num_workers) as pool:
            for fut in as_completed([pool.submit(_worker, j) for j in todo]):
                _tally(out, *fut.result())
                bar.update(1)
    bar.close()
    out["seconds"] = time.perf_counter() - t0
    os.makedirs(flow_root, exist_ok=True)
    write_quarantine(os.path.join(flow_root, FAILURES_FILENAME), sorted(out["failed"]), root,
                     header="# p3d-flow failures: <video path relative to dataset root><TAB><reason>\n")
    return out


def _tally(out: dict, video: str, status: str, reason: Optional[str], n: int) -> None:
    if status == "failed":
        out["failed"].append((video, reason))
    else:
        out[status] += 1
        out["flow_frames"] += n


# ---------------------------------------------------------------------------------------- reading
def read_flow_frames(folder: str, indices: Sequence[int]) -> torch.Tensor:
    """uint8 ``(T, H, W, 2)`` (x, y) of the 0-based flow ``indices`` (repeats allowed) in ``folder``."""
    from PIL import Image

    cache: Dict[int, np.ndarray] = {}
    frames = []
    for i in indices:
        if i not in cache:
            planes = []
            for axis in ("x", "y"):
                path = os.path.join(folder, f"{axis}_{i + 1:05d}.jpg")
                try:
                    with Image.open(path) as im:
                        planes.append(np.asarray(im.convert("L")))
                except (OSError, ValueError) as err:
                    raise DecodeError(folder, f"cannot read flow frame {os.path.basename(path)}: {err}") from None
            cache[i] = np.stack(planes, axis=-1)
        frames.append(cache[i])
    return torch.from_numpy(np.stack(frames))


def flow_index(records: Sequence[VideoRecord], root: str, flow_root: str) -> Dict[str, Union[VideoMeta, str]]:
    """``{abs video path: VideoMeta of its flow frames, or the reason there are none}``."""
    index: Dict[str, Union[VideoMeta, str]] = {}
    for r in records:
        folder = flow_dir(flow_root, root, r.path)
        meta = read_flow_meta(folder)
        if meta is None:
            why = "incomplete" if os.path.isdir(folder) else "missing"
            index[os.path.abspath(r.path)] = f"flow frames {why} in {folder} (run p3d-flow)"
        else:
            index[os.path.abspath(r.path)] = VideoMeta(int(meta["num_frames"]), 0.0, int(meta["width"]),
                                                       int(meta["height"]))
    return index


class FlowClipDataset(VideoClipDataset):
    """``VideoClipDataset`` over flow frames: same records, sampling, ids and bad-input handling.

    Sample ``i`` is clip ``i % num_clips`` of video ``i // num_clips`` with ``clip`` float
    ``(2, T, H, W)``; clip frame indices count flow frames (N - 1 per N-frame video). Videos
    without complete flow frames are skipped with a ``BadVideoWarning`` (``strict``: raise).
    Frames are stored at extraction size; a different ``resize`` is applied bilinearly to the
    quantised images (the flow values are not rescaled: extract at the training size).
    ``transform`` must be built with ``in_channels=2``.
    """

    def __init__(self, records: Sequence[VideoRecord], classes: Sequence[str], train: bool, root: str,
                 flow_root: str, **kwargs):
        self.root, self.flow_root = os.path.abspath(root), os.path.abspath(flow_root)
        kwargs["index"] = flow_index(records, self.root, self.flow_root)
        super().__init__(records, classes, train, **kwargs)
        if getattr(self.transform, "in_channels", 2) != 2:
            raise ValueError(f"FlowClipDataset needs a 2-channel transform, got {self.transform!r}")

    def _load(self, index: int) -> dict:
        video_idx, clip_idx = divmod(index, self.num_clips)
        folder = flow_dir(self.flow_root, self.root, self.videos[video_idx].path)
        clip = read_flow_frames(folder, self.frame_indices(index))  # (T, H, W, 2)
        if self.resize is not None:
            meta = self.metas[video_idx]
            size = output_size(meta.width, meta.height, self.resize)
            if tuple(clip.shape[1:3]) != size:
                clip = resize_clip(clip, size)
        rng = random.Random(derive_seed(self.seed, self.epoch, index, 1)) if self.train else None
        return {"clip": self.transform(clip, rng), "label": self.videos[video_idx].label,
                "video_idx": video_idx, "clip_idx": clip_idx, "valid": True}

    def load_video(self, video_idx: int) -> dict:
        """All evaluation clips of video ``video_idx``, collated (JPEG frames need no shared decode pass)."""
        from torch.utils.data import default_collate

        if self.train:
            raise ValueError("FlowClipDataset.load_video is for evaluation datasets (train=False)")
        if not 0 <= video_idx < len(self.videos):
            raise IndexError(f"video index {video_idx} out of range for {len(self.videos)} videos")
        base = video_idx * self.num_clips
        return default_collate([self[base + k] for k in range(self.num_clips)])

    def _invalid(self, index: int) -> dict:
        video_idx, clip_idx = divmod(index, self.num_clips)
        meta = self.metas[video_idx]
        h, w = output_size(meta.width, meta.height, self.resize)
        still = torch.full((len(self.frame_indices(index)), h, w, 2), 128, dtype=torch.uint8)  # (T, H, W, 2)
        clip = torch.zeros_like(self.transform(still, random.Random(0)))  # (2, T, H, W)
        return {"clip": clip, "label": self.videos[video_idx].label,
                "video_idx": video_idx, "clip_idx": clip_idx, "valid": False}
