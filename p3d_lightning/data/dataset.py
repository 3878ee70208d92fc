"""Map-style clip dataset over (video, clip) pairs.

Sample ``i`` is clip ``i % num_clips`` of video ``i // num_clips``. Training uses one random
clip per video per epoch (``num_clips=1``, ``clip_idx`` 0); evaluation uses ``num_clips``
uniformly spaced clips per video, each its own sample, so a DistributedSampler can split them
and predictions can be fused per video by ``video_idx``.

Randomness (window start, crop, flip) is drawn from ``derive_seed(seed, epoch, i)``, so a
sample does not depend on the worker, the rank, or what was sampled before. ``set_epoch``
writes the epoch into shared memory, so persistent workers see it too; ``EpochSampler``
calls it from Lightning's per-epoch ``set_epoch`` hook.

Bad input: videos that are quarantined, absent, empty or fail the index probe (not a video, a
still image renamed as one, a directory) are dropped at construction (one ``BadVideoWarning``
per file; ``skipped`` lists them, ``num_skipped`` counts them); with ``strict=True`` the first
one that is not quarantined raises instead, naming the file. Quarantined files are skipped in
strict mode too, so "``p3d-prescan``, then train strict" runs.

A video that only fails while decoding a clip (corrupt in the middle: a frame the decoder flags
corrupt, or broken after indexing) is handled by ``on_decode_error``:

- ``"substitute"`` (training default): the same clip of the next readable video is returned
  (deterministic; label and ``video_idx`` are the substitute's), so a long run never dies on
  one bad file. Harmless in training, where a clip is just one more example.
- ``"mark_invalid"`` (evaluation default): the sample keeps its own ``video_idx``,
  ``clip_idx`` and label, its clip is all zeros of the usual shape (so batches still
  collate), and ``valid`` is ``False``. Metrics and feature extraction drop such clips
  instead of counting a substitute as an extra clip of another video.
- ``"raise"`` (what ``strict=True`` selects): ``DecodeError`` naming the file.

Either way the failure is kept in ``runtime_failures`` and warned about once per file: once per
process, and with ``failure_log`` set once across the DataLoader workers of a run too (the log
is appended to, and a file already logged since the dataset was built is not warned again). Every sample carries ``valid``
(``True`` unless marked invalid), so train and eval batches have the same keys.
"""
from __future__ import annotations

import os
import random
import warnings
from typing import Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate

from .annotations import VideoRecord
from .container import DecodeError, VideoMeta
from .decode import output_size, read_clips, read_frames
from .index import build_index
from .sampling import derive_seed, eval_clip_indices, train_clip_indices
from .transforms import ClipTransform

__all__ = ["BadVideoWarning", "DECODE_ERROR_POLICIES", "VideoClipDataset", "EpochSampler",
           "VideoLevelDataset", "concat_clip_batches"]

DECODE_ERROR_POLICIES = ("substitute", "mark_invalid", "raise")


class BadVideoWarning(UserWarning):
    """A video was skipped or replaced because it is absent, quarantined or unreadable."""


class VideoClipDataset(Dataset):
    """Clips of ``records`` as dicts ``{"clip": float (C, T, H, W), "label", "video_idx", "clip_idx", "valid"}``.

    Args:
        records: annotated videos (``VideoRecord``: video_id, path, 0-based label).
        classes: class names, indexed by label.
        train: random clip per video (and the transform's random crop/flip) vs. uniform clips.
        clip_len, frame_stride: clip geometry (see ``sampling``).
        num_clips: clips per video (evaluation); forced to 1 for training.
        resize: decoder resize, ``None``, short side int or ``(H, W)``.
        transform: ``ClipTransform`` (crop, flip, normalise); default centre 160 crop, ImageNet.
        seed: base seed of all randomness.
        strict: raise on the first bad video instead of skipping it (quarantined ones are
            still skipped: the quarantine list is the decision to leave them out).
        index: ``{abs path: VideoMeta or reason}`` from ``build_index``; built (uncached) if None.
        quarantine: absolute paths to skip.
        short_policy: ``"repeat_last"`` or ``"loop"`` for videos shorter than a clip.
        failure_log: file to append ``path<TAB>reason`` lines for decode failures found in workers.
        max_substitutes: how many following videos ``"substitute"`` tries before raising.
        on_decode_error: what a clip that fails to decode after indexing becomes:
            ``"substitute"``, ``"mark_invalid"`` or ``"raise"`` (see the module docstring).
            ``None`` (default): ``"raise"`` if ``strict``, else ``"substitute"`` for training and
            ``"mark_invalid"`` for evaluation.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        classes: Sequence[str],
        train: bool,
        clip_len: int = 16,
        frame_stride: int = 1,
        num_clips: int = 1,
        resize: Union[None, int, Tuple[int, int]] = None,
        transform: Optional[ClipTransform] = None,
        seed: int = 0,
        strict: bool = False,
        index: Optional[Dict[str, Union[VideoMeta, str]]] = None,
        quarantine: Iterable[str] = (),
        short_policy: str = "repeat_last",
        failure_log: Optional[str] = None,
        max_substitutes: int = 8,
        on_decode_error: Optional[Literal["substitute", "mark_invalid", "raise"]] = None,
    ):
        if on_decode_error is None:
            on_decode_error = "raise" if strict else ("substitute" if train else "mark_invalid")
        if on_decode_error not in DECODE_ERROR_POLICIES:
            raise ValueError(f"on_decode_error must be one of {DECODE_ERROR_POLICIES}, got {on_decode_error!r}")
        self.on_decode_error = on_decode_error
        self.classes = list(classes)
        self.train = train
        self.clip_len, self.frame_stride = clip_len, frame_stride
        self.num_clips = 1 if train else int(num_clips)
        self.resize = tuple(resize) if isinstance(resize, (list, tuple)) else resize
        self.transform = transform or ClipTransform(train=train, crop_size=160, horizontal_flip=False)
        self.seed, self.strict, self.short_policy = seed, strict, short_policy
        self.failure_log, self.max_substitutes = failure_log, max_substitutes
        # failures logged before this point are earlier runs'; later lines come from this run's workers
        self._log_start = _file_size(failure_log)
        if index is None:
            index = build_index([r.path for r in records], cache_path=None, progress=False)
        quarantine = {os.path.abspath(q) for q in quarantine}

        self.videos: List[VideoRecord] = []
        self.metas: List[VideoMeta] = []
        self.skipped: List[Tuple[str, str]] = []  # (path, reason)
        for r in records:
            path = os.path.abspath(r.path)
            info = index.get(path, "not indexed")
            reason = "quarantined" if path in quarantine else (info if isinstance(info, str) else None)
            if reason is None:
                self.videos.append(r)
                self.metas.append(info)
                continue
            if strict and reason != "quarantined":
                raise DecodeError(path, f"{reason} (strict mode; pass strict=False to skip bad videos, "
                                        "or list it with p3d-prescan)")
            self.skipped.append((path, reason))
            warnings.warn(f"skipping video {path}: {reason}", BadVideoWarning, stacklevel=2)
        # Per-process record of clips that failed to decode after indexing.
        self.runtime_failures: Dict[str, str] = {}
        # Shared memory, so DataLoader workers (including persistent ones) see set_epoch.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def num_skipped(self) -> int:
        """Number of videos dropped at construction (absent, quarantined, unreadable)."""
        return len(self.skipped)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the random clips/crops of ``epoch`` (visible to running workers)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.videos) * self.num_clips

    def frame_indices(self, index: int) -> List[int]:
        """Frame indices sample ``index`` decodes (pure function of the sample and epoch)."""
        video_idx, clip_idx = divmod(index, self.num_clips)
        n = self.metas[video_idx].num_frames
        if self.train:
            return train_clip_indices(n, self.clip_len, self.frame_stride,
                                      derive_seed(self.seed, self.epoch, index, 0), self.short_policy)
        return eval_clip_indices(n, self.clip_len, self.frame_stride, self.num_clips, clip_idx, self.short_policy)

    def _load(self, index: int) -> dict:
        video_idx, clip_idx = divmod(index, self.num_clips)
        clip = read_frames(self.videos[video_idx].path, self.frame_indices(index), size=self.resize)  # (T, H, W, C)
        rng = random.Random(derive_seed(self.seed, self.epoch, index, 1)) if self.train else None
        return {"clip": self.transform(clip, rng), "label": self.videos[video_idx].label,
                "video_idx": video_idx, "clip_idx": clip_idx, "valid": True}

    def _invalid(self, index: int) -> dict:
        """Placeholder for a clip that failed to decode: its own ids and label, a zero clip."""
        video_idx, clip_idx = divmod(index, self.num_clips)
        meta = self.metas[video_idx]
        h, w = output_size(meta.width, meta.height, self.resize)
        black = torch.zeros(len(self.frame_indices(index)), h, w, 3, dtype=torch.uint8)  # (T, H, W, C)
        # the transform gives the shape every other sample has (crop, channels); the values are zeroed
        clip = torch.zeros_like(self.transform(black, random.Random(0)))  # (C, T, H, W)
        return {"clip": clip, "label": self.videos[video_idx].label,
                "video_idx": video_idx, "clip_idx": clip_idx, "valid": False}

    def _logged_by_another_worker(self, path: str) -> bool:
        if not self.failure_log:
            return False
        try:
            with open(self.failure_log, "rb") as f:
                f.seek(self._log_start)
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return False
        return any(line.split("\t", 1)[0] == path for line in tail.splitlines())

    def _record_failure(self, path: str, reason: str) -> None:
        if path in self.runtime_failures:
            return
        self.runtime_failures[path] = reason
        if self._logged_by_another_worker(path):
            return  # named once per run, not once per worker
        what = ("using a clip of another video instead" if self.on_decode_error == "substitute"
                else "its clips are marked invalid and left out of metrics and features")
        warnings.warn(f"video {path} failed to decode ({reason}); {what}", BadVideoWarning, stacklevel=3)
        if self.failure_log:
            try:
                with open(self.failure_log, "a", encoding="utf-8") as f:
                    f.write(f"{path}\t{reason}\n")
            except OSError:
                pass

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        if self.on_decode_error == "raise":
            return self._load(index)
        if self.on_decode_error == "mark_invalid":
            try:
                return self._load(index)
            except DecodeError as e:
                self._record_failure(e.path, e.reason)
                return self._invalid(index)
        video_idx, clip_idx = divmod(index, self.num_clips)
        n = len(self.videos)
        for k in range(min(n, self.max_substitutes + 1)):
            v = (video_idx + k) % n  # deterministic substitute: the next video
            try:
                return self._load(v * self.num_clips + clip_idx)
            except DecodeError as e:
                self._record_failure(e.path, e.reason)
        raise DecodeError(self.videos[video_idx].path,
                          f"this and the next {self.max_substitutes} videos all failed to decode")

    def load_video(self, video_idx: int) -> dict:
        """All ``num_clips`` evaluation clips of video ``video_idx``, cut from one decoding pass.

        Returns the collated samples ``video_idx * num_clips + k`` (k = 0 .. num_clips - 1):
        ``clip`` (N, C, T, H, W), ``label`` / ``video_idx`` / ``clip_idx`` (N,) long, ``valid``
        (N,) bool, equal to decoding each clip with its own seek (``read_clips``). If the pass
        fails (a file broken mid-way), the clips are taken one by one as ``__getitem__`` does,
        so the clips that still decode stay valid and ``on_decode_error`` applies as before.
        """
        if self.train:
            raise ValueError("VideoClipDataset.load_video is for evaluation datasets (train=False)")
        if not 0 <= video_idx < len(self.videos):
            raise IndexError(f"video index {video_idx} out of range for {len(self.videos)} videos")
        base = video_idx * self.num_clips
        record = self.videos[video_idx]
        try:
            clips = read_clips(record.path, [self.frame_indices(base + k) for k in range(self.num_clips)],
                               size=self.resize)  # num_clips x (T, H, W, C)
            samples = [{"clip": self.transform(c, None), "label": record.label, "video_idx": video_idx,
                        "clip_idx": k, "valid": True} for k, c in enumerate(clips)]
        except DecodeError:
            samples = [self[base + k] for k in range(self.num_clips)]
        return default_collate(samples)

    def __repr__(self) -> str:
        return (f"VideoClipDataset(videos={len(self.videos)}, classes={len(self.classes)}, train={self.train}, "
                f"clip_len={self.clip_len}, frame_stride={self.frame_stride}, num_clips={self.num_clips}, "
                f"resize={self.resize}, skipped={self.num_skipped}, on_decode_error={self.on_decode_error!r})")


def _file_size(path: Optional[str]) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


class EpochSampler(DistributedSampler):
    """Shuffling (distributed) sampler whose ``set_epoch`` also sets the dataset's epoch.

    Lightning calls ``set_epoch`` on the train sampler at the start of every epoch (also after
    resuming), before workers fetch, so each epoch draws new clips from ``(seed, epoch, index)``.
    Being a DistributedSampler, Lightning uses it as-is under DDP (pass the rank/world size).
    """

    def __init__(self, dataset: VideoClipDataset, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class VideoLevelDataset(Dataset):
    """Evaluation samples by video: item ``v`` is ``clips.load_video(v)``, every clip of video
    ``v`` from one decoding pass. Batch with ``concat_clip_batches`` to get the usual per-clip
    batches (``clip`` (N, C, T, H, W), ``label``, ``video_idx``, ``clip_idx``, ``valid``).

    A sampler over it hands out whole videos, so under DDP each video is decoded on one rank;
    the padding Lightning's ``DistributedSampler`` adds repeats whole videos, whose clip keys
    ``MultiClipAccuracy`` (and the feature writer) drop, so every clip still counts once.
    Other attributes (``videos``, ``metas``, ``num_clips``, ``classes``, ...) are the clip
    dataset's.
    """

    def __init__(self, clips: VideoClipDataset):
        if clips.train:
            raise ValueError("VideoLevelDataset wraps an evaluation VideoClipDataset (train=False)")
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips.videos)

    def __getitem__(self, video_idx: int) -> dict:
        return self.clips.load_video(video_idx)

    def __getattr__(self, name: str):
        if name == "clips":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.clips, name)

    def __repr__(self) -> str:
        return f"VideoLevelDataset({self.clips!r})"


def concat_clip_batches(videos: Sequence[dict]) -> dict:
    """Collate ``VideoLevelDataset`` items: concatenate their per-clip tensors along dim 0."""
    return {key: torch.cat([v[key] for v in videos]) for key in videos[0]}
