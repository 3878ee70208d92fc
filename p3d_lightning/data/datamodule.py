"""``VideoDataModule``: UCF101 / HMDB51 / Kinetics / folder / synthetic video clips for Lightning."""
from __future__ import annotations

import hashlib
import os
import warnings
from typing import List, Optional, Tuple, Union

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from .annotations import DATASETS, Annotations, load_annotations
from .dataset import EpochSampler, VideoClipDataset
from .index import build_index, default_cache_path
from .sampling import SHORT_POLICIES
from .transforms import NORMALIZATIONS, ClipTransform

__all__ = ["VideoDataModule", "read_quarantine"]


def read_quarantine(path: str, root: str) -> List[str]:
    """Absolute paths listed in a quarantine file (``p3d-prescan`` output).

    One path per line (relative to ``root`` or absolute), optionally followed by a tab and a
    reason; blank lines and ``#`` comments are ignored.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"quarantine file {os.path.abspath(path)!r} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            p = ln.split("\t")[0].strip()
            out.append(os.path.abspath(p if os.path.isabs(p) else os.path.join(root, p)))
    return out


class VideoDataModule(pl.LightningDataModule):
    """Video clips for training (one random clip per video per epoch) and evaluation
    (``num_eval_clips`` uniformly spaced clips per video, each a sample).

    Batches are dicts: ``clip`` float ``(N, C, T, H, W)``, ``label``, ``video_idx``,
    ``clip_idx`` long ``(N,)`` and ``valid`` bool ``(N,)``. ``val``, ``test`` and ``predict``
    all use the official test list of ``split`` (UCF101 and HMDB51 have no separate validation
    set; Kinetics uses its validation CSV).

    A clip that fails to decode after setup (a file broken or truncated since it was indexed)
    is replaced by the same clip of the next readable video in training, but in val / test /
    predict it keeps its own ids, gets a zero clip and ``valid=False``, so video-level metrics
    and features never count it as a clip of another video (``VideoClipDataset``'s
    ``on_decode_error``). ``decode_failures()`` lists the files; with ``strict=True`` the
    first failure raises instead.

    Args:
        dataset: "synthetic" | "ucf101" | "hmdb51" | "kinetics" | "folder".
        root: folder holding the class folders. For "synthetic" the data is generated there
            in ``prepare_data`` when ``root/classInd.txt`` is absent.
        num_classes: must equal the number of classes in the annotations (checked in setup).
        split: official split 1-3 (UCF101, HMDB51).
        clip_len, frame_stride: frames per clip and the step between them.
        resize: decoder resize: ``[H, W]`` or a short-side int. Paper: (182, 242) for P3D,
            (240, 320) for the 2D ResNet-50.
        crop_size: random (train) / centre (eval) square crop; 160 P3D, 224 ResNet-50.
        horizontal_flip: random flip in training. ``None`` (default): on for real datasets,
            off for "synthetic" (a mirror swaps the direction classes; ``True`` with
            "synthetic" warns).
        num_eval_clips: clips per video in val/test/predict (20 P3D, 25 frames ResNet-50).
        predict_split: videos that ``predict`` (feature extraction) covers: ``test`` (the
            official test list), ``train`` (the train list, evaluation clips and crops: features
            to train a linear classifier on, as the paper's transfer experiments) or ``all``.
        batch_size, eval_batch_size: loader batch sizes (eval defaults to ``batch_size``).
        num_workers, persistent_workers: DataLoader workers. Persistent workers (default) are
            started once per loader instead of every epoch (the synthetic ablation: ~15% less
            training time); they still draw new clips each epoch (``set_epoch`` is shared).
        normalization: "imagenet" (mean/std) or "caffe" (BGR 0-255 minus mean; P3D-199 weights).
        strict: raise on the first bad video (naming it) instead of skipping it, or, during a
            run, instead of substituting / marking its clip invalid.
        quarantine_file: ``p3d-prescan`` output; listed videos are skipped. Default: use
            ``<root>/p3d_quarantine.txt`` if it exists.
        seed: seed of clip sampling and augmentation (per sample from ``(seed, epoch, index)``).
        annotation_dir: where split files / CSVs live if not in the default places.
        short_video_policy: "repeat_last" or "loop" for videos shorter than a clip.
        cache_dir: where to keep the video index (default: beside the data, or a user cache dir
            if the data is read-only).
        synthetic_*: generator arguments for dataset="synthetic" (see
            ``generate_synthetic_dataset``); ``synthetic_size`` is ``[H, W]``.
        progress: show progress bars while generating / indexing.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str = "data/synthetic",
        num_classes: int = 8,
        split: int = 1,
        clip_len: int = 16,
        frame_stride: int = 1,
        resize: Union[int, Tuple[int, int]] = (182, 242),
        crop_size: int = 160,
        horizontal_flip: Optional[bool] = None,
        num_eval_clips: int = 20,
        batch_size: int = 8,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 2,
        persistent_workers: bool = True,
        normalization: str = "imagenet",
        predict_split: str = "test",
        strict: bool = False,
        quarantine_file: Optional[str] = None,
        seed: int = 0,
        annotation_dir: Optional[str] = None,
        short_video_policy: str = "repeat_last",
        cache_dir: Optional[str] = None,
        synthetic_num_pairs: int = 4,
        synthetic_videos_per_class: int = 48,
        synthetic_clips_per_group: int = 4,
        synthetic_size: Tuple[int, int] = (120, 160),
        synthetic_num_frames: int = 50,
        synthetic_fps: int = 25,
        synthetic_seed: int = 0,
        progress: bool = True,
    ):
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if predict_split not in ("test", "train", "all"):
            raise ValueError(f"predict_split must be 'test', 'train' or 'all', got {predict_split!r}")
        if short_video_policy not in SHORT_POLICIES:
            raise ValueError(f"short_video_policy must be one of {SHORT_POLICIES}, got {short_video_policy!r}")
        if dataset == "synthetic" and horizontal_flip:
            warnings.warn("horizontal_flip=True on the synthetic dataset mirrors the motion and so swaps "
                          "left/right and clockwise/anticlockwise classes; labels become noisy", UserWarning)
        self.save_hyperparameters()
        self.dataset, self.root, self.num_classes, self.split = dataset, root, num_classes, split
        self.clip_len, self.frame_stride = clip_len, frame_stride
        self.resize = resize if isinstance(resize, int) else tuple(resize)
        self.crop_size = crop_size
        self.horizontal_flip = (dataset != "synthetic") if horizontal_flip is None else bool(horizontal_flip)
        self.num_eval_clips = num_eval_clips
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.normalization, self.strict = normalization, strict
        self.quarantine_file, self.seed = quarantine_file, seed
        self.annotation_dir, self.short_video_policy, self.cache_dir = annotation_dir, short_video_policy, cache_dir
        self.synthetic_kwargs = dict(num_pairs=synthetic_num_pairs, videos_per_class=synthetic_videos_per_class,
                                     clips_per_group=synthetic_clips_per_group,
                                     size=tuple(synthetic_size), num_frames=synthetic_num_frames,
                                     fps=synthetic_fps, seed=synthetic_seed)
        self.progress = progress
        self.classes: List[str] = []
        self.train_dataset: Optional[VideoClipDataset] = None
        self.val_dataset: Optional[VideoClipDataset] = None
        self.test_dataset: Optional[VideoClipDataset] = None
        self.predict_dataset: Optional[VideoClipDataset] = None

    # ------------------------------------------------------------------ paths
    @property
    def index_path(self) -> str:
        """The video index cache file."""
        root = os.path.abspath(self.root)
        if self.cache_dir:
            digest = hashlib.sha1(root.encode()).hexdigest()[:12]
            return os.path.join(self.cache_dir, f"index-{os.path.basename(root)}-{digest}.json")
        return default_cache_path(root)

    @property
    def quarantine_path(self) -> Optional[str]:
        """``quarantine_file``, or ``<root>/p3d_quarantine.txt`` (``p3d-prescan``'s default) if present."""
        if self.quarantine_file:
            return self.quarantine_file
        auto = os.path.join(self.root, "p3d_quarantine.txt")
        return auto if os.path.isfile(auto) else None

    @property
    def failure_log(self) -> str:
        """File where workers append videos that failed to decode after indexing."""
        return os.path.join(os.path.dirname(self.index_path), ".p3d_decode_failures.txt")

    # ------------------------------------------------------------------ hooks
    def _annotations(self) -> Annotations:
        return load_annotations(self.dataset, self.root, self.split, self.annotation_dir)

    def _index(self, ann: Annotations, progress: bool):
        return build_index([r.path for r in ann.train + ann.test], cache_path=self.index_path, progress=progress)

    def prepare_data(self) -> None:
        """Generate the synthetic set if absent, then build the video index (rank zero)."""
        if self.dataset == "synthetic" and not os.path.isfile(os.path.join(self.root, "classInd.txt")):
            from .synthetic import generate_synthetic_dataset

            generate_synthetic_dataset(self.root, progress=self.progress, **self.synthetic_kwargs)
        self._index(self._annotations(), self.progress)

    def setup(self, stage: Optional[str] = None) -> None:
        """Read annotations, check ``num_classes`` and build the datasets."""
        if self.train_dataset is not None:
            return
        if self.dataset == "synthetic" and not os.path.isfile(os.path.join(self.root, "classInd.txt")):
            raise FileNotFoundError(f"synthetic dataset not found at {os.path.join(self.root, 'classInd.txt')!r}; "
                                    "call prepare_data() first (the Trainer does)")
        ann = self._annotations()
        if len(ann.classes) != self.num_classes:
            src = ann.sources[0] if ann.sources else self.root
            raise ValueError(f"num_classes={self.num_classes} but {src} defines {len(ann.classes)} classes "
                             f"({', '.join(ann.classes[:5])}{', ...' if len(ann.classes) > 5 else ''}); "
                             f"set num_classes={len(ann.classes)}")
        self.classes = ann.classes
        index = self._index(ann, progress=False)
        quarantine = read_quarantine(self.quarantine_path, self.root) if self.quarantine_path else []
        common = dict(classes=ann.classes, clip_len=self.clip_len, frame_stride=self.frame_stride,
                      resize=self.resize, seed=self.seed, strict=self.strict, index=index,
                      quarantine=quarantine, short_policy=self.short_video_policy, failure_log=self.failure_log)
        self.train_dataset = VideoClipDataset(
            ann.train, train=True, num_clips=1,
            transform=ClipTransform(True, self.crop_size, self.horizontal_flip, self.normalization), **common)
        eval_ds = VideoClipDataset(
            ann.test, train=False, num_clips=self.num_eval_clips,
            transform=ClipTransform(False, self.crop_size, False, self.normalization), **common)
        self.val_dataset = self.test_dataset = self.predict_dataset = eval_ds
        predict_split = self.hparams.predict_split
        if predict_split != "test":
            records = ann.train if predict_split == "train" else ann.train + ann.test
            self.predict_dataset = VideoClipDataset(
                records, train=False, num_clips=self.num_eval_clips,
                transform=ClipTransform(False, self.crop_size, False, self.normalization), **common)
        for name, ds in (("train", self.train_dataset), ("test", eval_ds)):
            if len(ds.videos) == 0:
                raise RuntimeError(f"no readable {name} videos for dataset={self.dataset!r} under {self.root!r} "
                                   f"({ds.num_skipped} skipped, e.g. {ds.skipped[:1]})")
        if self.num_skipped:
            warnings.warn(f"{self.num_skipped} bad or missing videos skipped under {self.root!r} "
                          f"(see VideoDataModule.skipped)", UserWarning)
        trainer = getattr(self, "trainer", None)
        if trainer is not None and getattr(trainer, "logger", None) is not None:
            try:
                trainer.logger.log_metrics({"data/num_skipped": float(self.num_skipped)}, step=0)
            except Exception:  # logging is best-effort here
                pass

    # ------------------------------------------------------------------ bad input
    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """``(path, reason)`` of every video dropped by setup (train and eval, no duplicates)."""
        seen = {}
        for ds in (self.train_dataset, self.test_dataset):
            for p, r in (ds.skipped if ds is not None else []):
                seen.setdefault(p, r)
        return list(seen.items())

    @property
    def num_skipped(self) -> int:
        """Number of videos dropped by setup (absent, quarantined, unreadable)."""
        return len(self.skipped)

    def decode_failures(self) -> List[Tuple[str, str]]:
        """Videos that failed while decoding clips (reported by any worker), ``(path, reason)``."""
        if not os.path.isfile(self.failure_log):
            return []
        with open(self.failure_log, encoding="utf-8") as f:
            items = dict(ln.rstrip("\n").split("\t", 1) for ln in f if "\t" in ln)
        return list(items.items())

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds, batch_size: int, sampler=None) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers,
                          persistent_workers=self.persistent_workers and self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.train_dataset, num_replicas=world, rank=rank, seed=self.seed)
        if trainer is not None:
            sampler.set_epoch(trainer.current_epoch)
        return self._loader(self.train_dataset, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset, self.eval_batch_size)
