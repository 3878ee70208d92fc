"""Video features for transfer: per video, the pool5 feature and class scores averaged over clips.

The paper's main use of P3D is as a generic video representation: the 2048-d pool5 feature of
20 clips per video, averaged, fed to a linear classifier. :class:`FeatureWriter` is the
``predict`` callback that writes exactly that::

    p3d predict --config experiments/ucf101/p3d199_features.yaml --features.output_dir feats/

Output (``<output_dir>/<filename>.pt`` or ``.npz``) holds, for V videos sorted by
``video_idx``:

- ``video_ids``: list of V strings (the dataset's ``videos[i].video_id``),
- ``video_idx``: (V,) long, ``labels``: (V,) long (-1 when unknown),
- ``features``: (V, F) float32, the clip-averaged pool5 feature,
- ``scores``: (V, K) float32, the clip-averaged softmax scores,
- ``num_clips``: (V,) long, clips averaged per video;

plus ``<filename>.manifest.json`` describing the file (shapes, classes, model, checkpoint).

Clips that failed to decode (``valid`` False, see ``VideoClipDataset``) are never averaged in:
a video's feature is the mean over its valid clips (``num_clips`` says how many), and a video
with no valid clip gets no row at all, rather than the feature of a zero clip or of another
video. The manifest's ``decode_failures`` lists both kinds by video id, and the writer warns.

Under DDP each rank writes its clips to ``<output_dir>/.<filename>.parts/rank<r>.pt``; after a
barrier rank 0 merges them, drops the sampler's padding duplicates by
``(video_idx, clip_idx)`` and writes the outputs.

Every file here holds only tensors, lists, strings and numbers, and is read back with
``torch.load(weights_only=True)`` (``.npz`` with ``allow_pickle=False``): loading a feature
file from someone else never runs code.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence

import numpy as np
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from p3d_lightning.data.dataset import BadVideoWarning
from p3d_lightning.metrics import dedup_clips
from p3d_lightning.models.weights import describe_load_error, read_torch_file

__all__ = ["FeatureWriter", "aggregate_video_features", "load_features", "merge_shards"]

_CLIP_KEYS = ("feature", "probs", "video_idx", "clip_idx")


def aggregate_video_features(parts: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Average per-clip ``feature``/``probs`` per video after de-duplicating clip keys.

    ``parts`` holds concatenated per-clip tensors ``feature`` (M, F), ``probs`` (M, K),
    ``video_idx`` (M,), ``clip_idx`` (M,) and optionally ``label`` (M,) and ``valid`` (M,)
    (default all True; invalid clips, which failed to decode, are not averaged in).
    Returns, for the V videos with at least one valid clip, sorted by ``video_idx``:
    ``video_idx`` (V,), ``features`` (V, F), ``scores`` (V, K), ``labels`` (V,), ``num_clips``
    (V,) valid clips averaged and ``num_failed_clips`` (V,) invalid ones; plus
    ``failed_video_idx`` (sorted) for the videos none of whose clips were valid and
    ``failed_clips`` (E, 2), the ``(video_idx, clip_idx)`` keys of all invalid clips.
    """
    keep = dedup_clips(parts["video_idx"], parts["clip_idx"])
    all_videos = torch.unique(parts["video_idx"][keep].long())
    valid = parts["valid"][keep].bool() if "valid" in parts else torch.ones(keep.numel(), dtype=torch.bool)
    failed_keys = torch.stack([parts["video_idx"][keep], parts["clip_idx"][keep]], dim=1)[~valid].long()  # (E, 2)
    keep = keep[valid]
    video_idx = parts["video_idx"][keep].long()
    videos, inverse = torch.unique(video_idx, return_inverse=True)  # (V,), (M,)
    v = videos.numel()
    counts = torch.bincount(inverse, minlength=v)

    def mean(x: torch.Tensor) -> torch.Tensor:
        x = x[keep].double()
        out = torch.zeros(v, x.shape[1], dtype=torch.float64).index_add_(0, inverse, x)
        return (out / counts.clamp_min(1)[:, None]).float()

    labels = torch.full((v,), -1, dtype=torch.long)
    if "label" in parts:
        labels = labels.scatter(0, inverse, parts["label"][keep].long())
    num_failed = (failed_keys[:, :1] == videos[None, :]).sum(0)  # (V,) failed clips of videos with a row
    return {
        "video_idx": videos,
        "features": mean(parts["feature"]),
        "scores": mean(parts["probs"]),
        "labels": labels,
        "num_clips": counts,
        "num_failed_clips": num_failed,
        "failed_video_idx": all_videos[~torch.isin(all_videos, videos)],
        "failed_clips": failed_keys,
    }


def load_features(path: str) -> Dict[str, Any]:
    """Read a file written by :class:`FeatureWriter` (``.pt`` or ``.npz``) as a dict of tensors.

    Safe on untrusted files: ``.pt`` is read with ``torch.load(weights_only=True)`` and ``.npz``
    with ``allow_pickle=False``, so no pickled object is ever built. A corrupt file or one that
    needs pickling raises ``ValueError`` naming it.
    """
    hint = "expected a file written by p3d predict (FeatureWriter)"
    if str(path).endswith(".npz"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no features at {path}: {hint}")
        try:
            with np.load(path, allow_pickle=False) as data:
                text = ("video_ids", "classes")
                out: Dict[str, Any] = {k: torch.from_numpy(data[k]) for k in data.files if k not in text}
                for k in text:
                    if k in data.files:
                        out[k] = [str(s) for s in data[k]]
        except Exception as err:  # object arrays (pickles), bad zip, truncated arrays
            raise ValueError(f"cannot read features {path}: not an .npz of plain arrays, or corrupt "
                             f"({describe_load_error(err)}); {hint}") from None
        return out
    data = read_torch_file(path, "features", hint)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a dict of tensors; {hint}")
    return data


class FeatureWriter(BasePredictionWriter):
    """Write clip-averaged pool5 features and scores per video during ``predict``.

    Args:
        output_dir: folder for the outputs (created).
        filename: base name of the output (``<filename>.pt``/``.npz`` and
            ``<filename>.manifest.json``).
        format: ``pt`` (torch) or ``npz`` (numpy; readable without torch).
        save_scores: also store the averaged softmax scores.

    Expects ``predict_step`` to return a dict with ``feature`` (N, F), ``probs`` (N, K),
    ``video_idx``, ``clip_idx`` and optionally ``label`` and ``valid`` (as
    :class:`P3DClassifier` does). Invalid clips are left out (see the module docstring);
    after writing, ``failed_video_ids`` lists the videos left without features.
    """

    def __init__(
        self,
        output_dir: str = "features",
        filename: str = "features",
        format: Literal["pt", "npz"] = "pt",
        save_scores: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        if format not in ("pt", "npz"):
            raise ValueError(f"FeatureWriter: format must be 'pt' or 'npz', got {format!r}")
        self.output_dir = str(output_dir)
        self.filename = filename
        self.format = format
        self.save_scores = save_scores
        self._buffer: List[Dict[str, torch.Tensor]] = []
        self.output_path: Optional[str] = None
        self.manifest_path: Optional[str] = None
        self.failed_video_ids: List[str] = []

    @property
    def _parts_dir(self) -> Path:
        return Path(self.output_dir) / f".{self.filename}.parts"

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._buffer = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if not isinstance(prediction, dict) or any(k not in prediction for k in _CLIP_KEYS):
            got = sorted(prediction) if isinstance(prediction, dict) else type(prediction).__name__
            raise TypeError(f"FeatureWriter: predict_step must return a dict with keys {_CLIP_KEYS}, got {got}")
        item = {k: v.detach().cpu() for k, v in prediction.items() if isinstance(v, torch.Tensor)}
        if not self.save_scores:
            item["probs"] = item["probs"][:, :0]
        self._buffer.append(item)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        rank, world = trainer.global_rank, trainer.world_size
        local = _concat(self._buffer)
        self._buffer = []
        if world > 1:
            if rank == 0:
                self._parts_dir.mkdir(parents=True, exist_ok=True)
            trainer.strategy.barrier("features_parts_dir")
            torch.save(local, self._parts_dir / f"rank{rank}.pt")
            trainer.strategy.barrier("features_parts_written")
        if rank == 0:
            if world > 1:
                local = merge_shards(self._parts_dir, world)
                shutil.rmtree(self._parts_dir, ignore_errors=True)
            self._write(trainer, pl_module, local)
        if world > 1:
            trainer.strategy.barrier("features_written")
        # every rank knows where the result is
        self.output_path = str(Path(self.output_dir) / f"{self.filename}.{self.format}")
        self.manifest_path = str(Path(self.output_dir) / f"{self.filename}.manifest.json")

    def _write(self, trainer: Any, pl_module: Any, clips: Dict[str, torch.Tensor]) -> None:
        out_dir = Path(self.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not clips:
            raise RuntimeError("FeatureWriter: predict produced no clips; is the predict dataset empty?")
        agg = aggregate_video_features(clips)
        dataset = _predict_dataset(trainer)
        videos = getattr(dataset, "videos", None)
        ids = [_video_id(videos, int(i)) for i in agg["video_idx"]]
        failures = _failure_summary(agg, videos)
        self.failed_video_ids = failures["videos_without_features"]
        if failures["num_failed_clips"]:
            partial = len(failures["videos_with_failed_clips"])
            shown = ", ".join(self.failed_video_ids[:10]) + (" ..." if len(self.failed_video_ids) > 10 else "")
            warnings.warn(
                f"FeatureWriter: {failures['num_failed_clips']} clips failed to decode and were left out; "
                f"{partial} videos are averaged over their remaining clips and "
                f"{len(self.failed_video_ids)} videos have no features in {self.filename}.{self.format}"
                + (f" ({shown})" if shown else "") + "; see decode_failures in the manifest",
                BadVideoWarning,
            )
        classes = [str(c) for c in (getattr(dataset, "classes", None) or [])]
        record: Dict[str, Any] = {
            "video_ids": ids,
            "video_idx": agg["video_idx"],
            "labels": agg["labels"],
            "features": agg["features"],
            "num_clips": agg["num_clips"],
        }
        if self.save_scores:
            record["scores"] = agg["scores"]
        path = out_dir / f"{self.filename}.{self.format}"
        tmp = out_dir / f".{self.filename}.tmp.{self.format}"
        if self.format == "pt":
            torch.save({**record, "classes": classes}, tmp)
        else:
            arrays = {k: v.numpy() for k, v in record.items() if isinstance(v, torch.Tensor)}
            with open(tmp, "wb") as f:
                np.savez(f, video_ids=np.array(ids, dtype=str), classes=np.array(classes, dtype=str), **arrays)
        os.replace(tmp, path)
        hp = dict(getattr(pl_module, "hparams", {}) or {})
        manifest = {
            "file": path.name,
            "format": self.format,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "num_videos": len(ids),
            "num_clips_total": int(agg["num_clips"].sum()),
            "clips_per_video": {"min": int(agg["num_clips"].min()) if len(ids) else 0,
                                "max": int(agg["num_clips"].max()) if len(ids) else 0},
            "decode_failures": failures,
            "feature_dim": int(agg["features"].shape[1]),
            "num_classes": int(clips["probs"].shape[1]) if self.save_scores else None,
            "keys": {k: list(v.shape) if isinstance(v, torch.Tensor) else [len(v)] for k, v in record.items()},
            "feature": "pool5 (global average pool, before dropout), averaged over clips",
            "scores": "softmax probabilities averaged over clips" if self.save_scores else None,
            "classes": classes,
            "model": {k: v for k, v in hp.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "checkpoint": str(trainer.ckpt_path) if getattr(trainer, "ckpt_path", None) else None,
            "world_size": int(trainer.world_size),
        }
        (out_dir / f"{self.filename}.manifest.json").write_text(json.dumps(manifest, indent=2))
        # where predict's output went, once (rank zero writes): the run's only product. Through
        # tqdm, which prints it above the progress bar instead of onto the end of its line.
        from tqdm import tqdm

        tqdm.write(f"features: {len(ids)} videos ({manifest['num_clips_total']} clips, "
                   f"{manifest['feature_dim']}-d pool5) -> {path} "
                   f"(manifest: {out_dir / f'{self.filename}.manifest.json'})")


def _failure_summary(agg: Dict[str, torch.Tensor], videos: Any) -> Dict[str, Any]:
    """The manifest's ``decode_failures``: how many clips failed and which videos they hit."""
    partial = [{"video_id": _video_id(videos, int(i)), "failed_clips": int(n)}
               for i, n in zip(agg["video_idx"], agg["num_failed_clips"]) if n > 0]
    return {
        "num_failed_clips": int(agg["failed_clips"].shape[0]),
        "videos_with_failed_clips": partial,
        "videos_without_features": [_video_id(videos, int(i)) for i in agg["failed_video_idx"]],
        "policy": "clips that failed to decode are not averaged in; videos with no valid clip have no row",
    }


def merge_shards(parts_dir: Any, world: int) -> Dict[str, torch.Tensor]:
    """Concatenate the per-rank clip files ``<parts_dir>/rank<r>.pt`` (r < ``world``), read
    with ``weights_only=True``; a missing or unreadable shard raises naming it."""
    shards = []
    for r in range(world):
        shard = read_torch_file(Path(parts_dir) / f"rank{r}.pt", f"rank {r}'s feature shard")
        if not isinstance(shard, dict) or any(not isinstance(v, torch.Tensor) for v in shard.values()):
            raise ValueError(f"{Path(parts_dir) / f'rank{r}.pt'}: expected a dict of tensors (a FeatureWriter shard)")
        shards.append(shard)
    return _concat([s for s in shards if s])


def _concat(items: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    if not items:
        return {}
    keys = [k for k in items[0] if all(k in it for it in items)]
    return {k: torch.cat([it[k] for it in items]) for k in keys}


def _predict_dataset(trainer: Any) -> Any:
    dm = getattr(trainer, "datamodule", None)
    ds = getattr(dm, "predict_dataset", None) if dm is not None else None
    if ds is not None:
        return ds
    loaders = getattr(trainer, "predict_dataloaders", None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return getattr(loaders, "dataset", None)


def _video_id(videos: Any, idx: int) -> str:
    if videos is None or idx < 0 or idx >= len(videos):
        return str(idx)
    v = videos[idx]
    return str(getattr(v, "video_id", None) or (v.get("video_id") if isinstance(v, dict) else idx))
