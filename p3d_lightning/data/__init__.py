"""Video data: decoding (PyAV), clip sampling, transforms, annotations, datasets, the DataModule
and the synthetic motion dataset.

| module | what it holds |
| --- | --- |
| ``container`` | opening a file, ``DecodeError``, ``VideoMeta``, ``probe_video``, keyframes, full-decode scans |
| ``decode`` | ``read_frames`` (one clip), ``read_clips`` (a video's clips in one pass), ``read_all_frames`` |
| ``encode`` | ``write_video``, ``transcode_video`` (``p3d-prep``'s re-encoding) |
| ``annotations`` | split files and CSVs of UCF101 / HMDB51 / Kinetics / folder layouts |
| ``index`` | the cached per-video probe (frame counts) |
| ``sampling`` | clip positions: integer arithmetic only |
| ``transforms`` | crop, flip, normalisation of a decoded clip |
| ``dataset`` | ``VideoClipDataset``, ``EpochSampler``, per-video evaluation samples |
| ``contract`` | the input contract (normalisation, channel order, modality) and its checks |
| ``datamodule`` | ``VideoDataModule`` (the only module that imports Lightning) |
| ``quarantine`` | the skip list ``p3d-prescan`` / ``p3d-prep`` write and the datamodule reads |
| ``prescan``, ``prep``, ``flow``, ``synthetic``, ``bench_decode`` | the libraries of the data commands |

Every name below is imported on first use (module ``__getattr__``): ``import p3d_lightning.data``
loads nothing, so ``p3d-synth`` and ``p3d-prescan`` start without torch or PyTorch Lightning
(seconds of imports), and ``from p3d_lightning.data import VideoDataModule`` works as before.
"""
from p3d_lightning._lazy import lazy_exports

# public name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("DATASETS", "Annotations", "VideoRecord", "load_annotations", "parse_folder", "parse_hmdb51",
                     "parse_kinetics", "parse_ucf101"), "annotations"),
    **dict.fromkeys(("VideoDataModule",), "datamodule"),
    **dict.fromkeys(("DECODE_ERROR_POLICIES", "BadVideoWarning", "EpochSampler", "VideoClipDataset"), "dataset"),
    **dict.fromkeys(("DecodeError", "VideoMeta", "probe_video"), "container"),
    **dict.fromkeys(("read_all_frames", "read_frames"), "decode"),
    **dict.fromkeys(("write_video",), "encode"),
    **dict.fromkeys(("FlowClipDataset",), "flow"),
    **dict.fromkeys(("build_index", "default_cache_path"), "index"),
    **dict.fromkeys(("read_quarantine",), "quarantine"),
    **dict.fromkeys(("clip_span", "derive_seed", "eval_clip_indices", "eval_clip_starts", "train_clip_indices"),
                    "sampling"),
    **dict.fromkeys(("class_names", "generate_synthetic_dataset", "pair_of", "render_video", "sample_params"),
                    "synthetic"),
    **dict.fromkeys(("ClipTransform", "normalize"), "transforms"),
}
_SUBMODULES = ("annotations", "bench_decode", "container", "contract", "datamodule", "dataset", "decode", "encode",
               "flow", "index", "prep", "prescan", "quarantine", "sampling", "synthetic", "transforms")

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
