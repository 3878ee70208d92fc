"""Video data: decoding (PyAV), clip sampling, transforms, annotations, datasets, the DataModule
and the synthetic motion dataset.

``VideoDataModule`` and ``read_quarantine`` are imported on first use (module ``__getattr__``):
they need PyTorch Lightning, whose import takes seconds, and the data commands (``p3d-synth``,
``p3d-prescan``, ``p3d-prep``) do not.
"""
from .annotations import (DATASETS, Annotations, VideoRecord, load_annotations, parse_folder, parse_hmdb51,
                          parse_kinetics, parse_ucf101)
from .dataset import DECODE_ERROR_POLICIES, BadVideoWarning, EpochSampler, VideoClipDataset
from .decode import DecodeError, VideoMeta, probe_video, read_all_frames, read_frames, write_video
from .index import build_index, default_cache_path
from .sampling import clip_span, derive_seed, eval_clip_indices, eval_clip_starts, train_clip_indices
from .synthetic import class_names, generate_synthetic_dataset, pair_of, render_video, sample_params
from .transforms import ClipTransform, normalize

__all__ = [
    "DATASETS", "Annotations", "VideoRecord", "load_annotations", "parse_folder", "parse_hmdb51",
    "parse_kinetics", "parse_ucf101", "VideoDataModule", "read_quarantine", "BadVideoWarning", "DECODE_ERROR_POLICIES",
    "EpochSampler",
    "VideoClipDataset", "DecodeError", "VideoMeta", "probe_video", "read_all_frames", "read_frames",
    "write_video", "build_index", "default_cache_path", "clip_span", "derive_seed", "eval_clip_indices",
    "eval_clip_starts", "train_clip_indices", "class_names", "generate_synthetic_dataset", "pair_of",
    "render_video", "sample_params", "ClipTransform", "normalize",
]


_LAZY = {"VideoDataModule": "datamodule", "read_quarantine": "datamodule"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
