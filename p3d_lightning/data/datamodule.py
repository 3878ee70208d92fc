"""``VideoDataModule``: UCF101 / HMDB51 / Kinetics / folder / synthetic video clips for Lightning."""
from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from p3d_lightning.models.zoo import ArchName

from .annotations import DATASETS, Annotations, load_annotations
from .contract import MODALITIES, InputContract, check_pretrained_contract, contract_conflicts, resolve_input_contract
from .dataset import EpochSampler, VideoClipDataset, VideoLevelDataset, concat_clip_batches
from .index import build_index, default_cache_path
from .quarantine import QUARANTINE_FILENAME, read_quarantine
from .sampling import SHORT_POLICIES
from .transforms import CHANNEL_ORDERS, NORMALIZATIONS, ClipTransform

__all__ = ["VideoDataModule"]

#: Closed sets as types: a config value outside them is refused when the config is read, naming
#: the option (``data.dataset``, ``data.normalization``, ...) and listing the accepted values.
DatasetName = Literal[DATASETS]
PREDICT_SPLITS, EVAL_DECODES = ("test", "train", "all"), ("video", "clip")


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
        eval_decode: ``"video"`` (default): val/test/predict decode each video once and cut
            all its clips from that pass (``VideoLevelDataset``; identical clips, 3-10x fewer
            decoded frames); batches then hold whole videos, ``max(1, eval_batch_size //
            num_eval_clips)`` of them. ``"clip"``: every clip its own sample and seek (batches
            of exactly ``eval_batch_size`` clips).
        predict_split: videos that ``predict`` (feature extraction) covers: ``test`` (the
            official test list), ``train`` (the train list, evaluation clips and crops: features
            to train a linear classifier on, as the paper's transfer experiments) or ``all``.
        batch_size, eval_batch_size: loader batch sizes (eval defaults to ``batch_size``).
        num_workers, persistent_workers: DataLoader workers. Persistent workers (default) are
            started once per loader instead of every epoch (the synthetic ablation: ~15% less
            training time); they still draw new clips each epoch (``set_epoch`` is shared).
        model_cfg: architecture whose ``ModelCfg`` (``models/zoo.py``) supplies the input
            contract (normalisation, channel order, mean/std, modality). Default: the trainer's
            model's ``hparams.arch``, read in ``setup``; must agree with it when both are set.
            (Not called ``arch``: Lightning refuses equal hparam names with different values.)
        normalization: "imagenet" ([0, 1] pixels, mean/std) or "caffe" (0-255 minus mean; the
            released P3D-199 weights). ``None`` (default): the architecture's ModelCfg
            ("caffe" for p3d199 / p3d199_flow, "imagenet" otherwise; "imagenet" with no arch).
        channel_order: "RGB" or "BGR" for frames ("xy" for flow). ``None``: the ModelCfg's
            (BGR for the released P3D-199, inferred: see docs/models.md), else RGB for
            "imagenet" and BGR for "caffe".
        mean, std: per-channel statistics in the output channel order ([0, 1] units for
            "imagenet", 0-255 for "caffe"). ``None``: the ModelCfg's / the normalisation's.
        modality: "rgb" (decoded video frames) or "flow" (``p3d-flow`` x/y frames under
            ``flow_root``). ``None``: from the network's input channels (2 -> flow).
        flow_root: where ``p3d-flow`` wrote the flow frames (default ``<root>_flow``).
        The resolved contract is ``input_contract`` after setup; a ``model.pretrained`` whose
        format expects another normalisation, or a restored checkpoint trained with another
        contract, raises an error naming both (see :func:`check_pretrained_contract`).
        strict: raise on the first bad video (naming it) instead of skipping it, or, during a
            run, instead of substituting / marking its clip invalid.
        quarantine_file: ``p3d-prescan`` output; listed videos are skipped. Default: use
            ``<root>/p3d_quarantine.txt`` if it exists.
        seed: seed of clip sampling and augmentation (per sample from ``(seed, epoch, index)``).
        annotation_dir: where split files / CSVs live if not in the default places.
        short_video_policy: "repeat_last" or "loop" for videos shorter than a clip.
        cache_dir: where to keep the video index (default: beside the data, or a user cache dir
            if the data is read-only).
        synthetic_generate: for ``dataset="synthetic"``, write the set under ``root`` when it is
            not there (the synthetic configs say so); off by default, so that a mistyped root is
            an error naming it instead of a fresh set of videos in a new folder.
        synthetic_*: generator arguments for dataset="synthetic" (see
            ``generate_synthetic_dataset``); ``synthetic_size`` is ``[H, W]``.
        progress: show progress bars while generating / indexing.
    """

    def __init__(
        self,
        dataset: DatasetName = "synthetic",
        root: str = "data/synthetic",
        num_classes: int = 8,
        split: int = 1,
        clip_len: int = 16,
        frame_stride: int = 1,
        resize: Union[int, Tuple[int, int]] = (182, 242),
        crop_size: int = 160,
        horizontal_flip: Optional[bool] = None,
        num_eval_clips: int = 20,
        eval_decode: Literal[EVAL_DECODES] = "video",
        batch_size: int = 8,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 2,
        persistent_workers: bool = True,
        normalization: Optional[Literal[NORMALIZATIONS]] = None,
        predict_split: Literal[PREDICT_SPLITS] = "test",
        strict: bool = False,
        quarantine_file: Optional[str] = None,
        seed: int = 0,
        annotation_dir: Optional[str] = None,
        short_video_policy: Literal[SHORT_POLICIES] = "repeat_last",
        cache_dir: Optional[str] = None,
        synthetic_generate: bool = False,
        synthetic_num_pairs: int = 4,
        synthetic_videos_per_class: int = 48,
        synthetic_clips_per_group: int = 4,
        synthetic_size: Tuple[int, int] = (120, 160),
        synthetic_num_frames: int = 50,
        synthetic_fps: int = 25,
        synthetic_seed: int = 0,
        progress: bool = True,
        model_cfg: Optional[ArchName] = None,
        channel_order: Optional[Literal[CHANNEL_ORDERS]] = None,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
        modality: Optional[Literal[MODALITIES]] = None,
        flow_root: Optional[str] = None,
    ):
        super().__init__()
        # the CLI checks these types when it reads the config; Python callers get the same message
        for option, value, allowed in (("dataset", dataset, DATASETS), ("normalization", normalization, NORMALIZATIONS),
                                       ("modality", modality, MODALITIES),
                                       ("predict_split", predict_split, PREDICT_SPLITS),
                                       ("short_video_policy", short_video_policy, SHORT_POLICIES),
                                       ("eval_decode", eval_decode, EVAL_DECODES)):
            if value is not None and value not in allowed:
                raise ValueError(f"data.{option} must be one of {allowed}, got {value!r}")
        if model_cfg is not None:
            from p3d_lightning.models.zoo import get_model_cfg

            get_model_cfg(model_cfg)  # unknown names fail here, listing the valid ones
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
        self.eval_decode = eval_decode
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.normalization, self.strict = normalization, strict
        self.model_cfg, self.channel_order, self.modality = model_cfg, channel_order, modality
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)
        self.flow_root = flow_root
        #: the resolved :class:`InputContract` (set by ``setup``)
        self.input_contract: Optional[InputContract] = None
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
        auto = os.path.join(self.root, QUARANTINE_FILENAME)
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
        """Generate the synthetic set if absent, then build the video index (rank zero).

        Flow clips are read from ``flow_root``, so no video index is built for them.
        """
        if self.dataset == "synthetic":
            from .synthetic import ensure_synthetic_dataset

            ensure_synthetic_dataset(self.root, self.hparams.synthetic_generate, self.progress, **self.synthetic_kwargs)
        if self.resolve_input_contract().modality != "flow":
            self._index(self._annotations(), self.progress)

    # ------------------------------------------------------------------ input contract
    def _model(self) -> Any:
        trainer = getattr(self, "trainer", None)
        return getattr(trainer, "lightning_module", None) if trainer is not None else None

    def resolve_input_contract(self, model: Any = None) -> InputContract:
        """The :class:`InputContract` for ``model`` (default: the trainer's LightningModule, if any).

        The architecture is ``model_cfg`` or the model's ``hparams.arch``; the channel count is the
        model network's ``in_channels``. Does not check pretrained weights (``setup`` does).
        """
        model = model if model is not None else self._model()
        hp = getattr(model, "hparams", None) or {}
        arch = self.model_cfg
        model_arch = hp.get("arch") if hasattr(hp, "get") else None
        if arch and model_arch and arch != model_arch:
            raise ValueError(f"data.model_cfg={arch!r} but model.arch={model_arch!r}: the input contract comes from "
                             "one architecture; drop data.model_cfg or make them equal")
        arch = arch or model_arch
        net = getattr(model, "model", None)
        in_channels = getattr(net, "in_channels", None)
        return resolve_input_contract(arch, in_channels, self.normalization, self.channel_order, self.mean,
                                      self.std, self.modality)

    def _transform(self, train: bool, contract: InputContract) -> ClipTransform:
        return ClipTransform(train, self.crop_size, self.horizontal_flip if train else False, contract.normalization,
                             contract.channel_order, contract.mean, contract.std, contract.in_channels)

    def state_dict(self) -> Dict[str, Any]:
        """Saved in checkpoints: the input contract the model was trained / evaluated with."""
        return {"input_contract": self.input_contract.as_dict()} if self.input_contract is not None else {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Refuse a checkpoint whose saved input contract differs from this data module's."""
        stored = state_dict.get("input_contract") if isinstance(state_dict, dict) else None
        if stored and self.input_contract is not None:
            conflicts = contract_conflicts(stored, self.input_contract)
            if conflicts:
                raise ValueError(f"the checkpoint being restored was trained on clips with another input contract "
                                 f"than data.* gives now ({'; '.join(conflicts)}; checkpoint vs data); set "
                                 f"data.normalization/channel_order/mean/std/modality to match")

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
        contract = self.resolve_input_contract()
        model = self._model()
        hp = getattr(model, "hparams", None) or {}
        resuming = getattr(getattr(self, "trainer", None), "ckpt_path", None) is not None
        if hasattr(hp, "get") and not resuming:  # a restored checkpoint is checked in load_state_dict
            check_pretrained_contract(hp.get("pretrained"), hp.get("pretrained_format"), contract)
        self.input_contract = contract
        quarantine = read_quarantine(self.quarantine_path, self.root) if self.quarantine_path else []
        common = dict(classes=ann.classes, clip_len=self.clip_len, frame_stride=self.frame_stride,
                      resize=self.resize, seed=self.seed, strict=self.strict,
                      quarantine=quarantine, short_policy=self.short_video_policy, failure_log=self.failure_log)
        if contract.modality == "flow":
            from .flow import FlowClipDataset, default_flow_root

            flow_root = self.flow_root or default_flow_root(self.root)
            if not os.path.isdir(flow_root):
                raise FileNotFoundError(f"data.flow_root {os.path.abspath(flow_root)!r} does not exist: extract the "
                                        f"flow frames first (p3d-flow {self.root} --output {flow_root})")

            def make(records, train, num_clips):
                return FlowClipDataset(records, train=train, root=self.root, flow_root=flow_root, num_clips=num_clips,
                                       transform=self._transform(train, contract), **common)
        else:
            index = self._index(ann, progress=False)

            def make(records, train, num_clips):
                return VideoClipDataset(records, train=train, num_clips=num_clips, index=index,
                                        transform=self._transform(train, contract), **common)
        self.train_dataset = make(ann.train, True, 1)
        eval_ds = make(ann.test, False, self.num_eval_clips)
        self.val_dataset = self.test_dataset = self.predict_dataset = eval_ds
        predict_split = self.hparams.predict_split
        if predict_split != "test":
            records = ann.train if predict_split == "train" else ann.train + ann.test
            self.predict_dataset = make(records, False, self.num_eval_clips)
        # test / predict need no training videos (e.g. a handful of labelled validation videos)
        needed = (("test", eval_ds),) if stage in ("test", "predict", "validate") else \
            (("train", self.train_dataset), ("test", eval_ds))
        for name, ds in needed:
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
        if self.train_dataset is not None and len(self.train_dataset.videos) == 0:
            ds = self.train_dataset
            raise RuntimeError(f"no readable train videos for dataset={self.dataset!r} under {self.root!r} "
                               f"({ds.num_skipped} skipped, e.g. {ds.skipped[:1]})")
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.train_dataset, num_replicas=world, rank=rank, seed=self.seed)
        if trainer is not None:
            sampler.set_epoch(trainer.current_epoch)
        return self._loader(self.train_dataset, self.batch_size, sampler)

    def _eval_loader(self, ds) -> DataLoader:
        """Per-video samples (one decode per video, ``eval_decode="video"``) or per-clip ones."""
        if self.eval_decode != "video" or not hasattr(ds, "load_video"):
            return self._loader(ds, self.eval_batch_size)
        videos_per_batch = max(1, self.eval_batch_size // max(1, ds.num_clips))
        return DataLoader(VideoLevelDataset(ds), batch_size=videos_per_batch, shuffle=False,
                          collate_fn=concat_clip_batches, num_workers=self.num_workers,
                          persistent_workers=self.persistent_workers and self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_dataset)
