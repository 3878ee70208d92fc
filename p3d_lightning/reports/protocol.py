"""Notebook 03 (``03_table2_protocol.ipynb``): Table 2's protocol on our test set.

:func:`save_clip_predictions` runs a test loader once and saves the per-clip softmax scores
(``p3d-report clip-predictions`` does it for a trained run, see
:func:`clip_predictions_from_checkpoint`); :func:`protocol_metrics` turns them into clip hit@1,
video hit@1 and video hit@5; :func:`table2` adds the paper's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from p3d_lightning.paper import TABLE2
from p3d_lightning.reports.common import PathLike

__all__ = ["save_clip_predictions", "clip_predictions_from_checkpoint", "load_clip_predictions", "protocol_metrics", "table2"]

def _batch_to(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.inference_mode()
def save_clip_predictions(
    model: torch.nn.Module,
    datamodule: Any,
    path: PathLike,
    stage: str = "test",
    device: Union[str, torch.device] = "cpu",
    max_batches: Optional[int] = None,
) -> Path:
    """Run one evaluation loader of ``datamodule`` once and save every clip's softmax scores.

    Args:
        model: a network mapping a clip batch (N, C, T, H, W) to logits (N, K): a ``P3DResNet``
            or a LightningModule whose ``forward`` does (``P3DClassifier``).
        datamodule: a ``VideoDataModule`` (or anything with ``setup`` and ``<stage>_dataloader``
            yielding dict batches with ``clip``, ``label``, ``video_idx``, ``clip_idx``).
        path: the ``.pt`` file to write.
        stage: ``"test"``, ``"val"`` or ``"predict"``.
        device: where to run the model.
        max_batches: stop after this many batches (for quick looks; default: all).

    The file holds ``scores`` (M, K) float32 softmax, ``labels``, ``video_idx``, ``clip_idx``
    (M,) int64, ``valid`` (M,) bool (False for a clip that failed to decode; its scores are
    those of the all-zero placeholder clip and :func:`protocol_metrics` ignores them),
    ``classes`` (class names, if the datamodule has them) and ``num_classes``. Returns ``path``.
    """
    loaders = {"test": "test_dataloader", "val": "val_dataloader", "predict": "predict_dataloader"}
    if stage not in loaders:
        raise ValueError(f"stage must be one of {sorted(loaders)}, got {stage!r}")
    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    datamodule.setup("validate" if stage == "val" else stage)
    loader = getattr(datamodule, loaders[stage])()
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    scores, labels, videos, clips, valids = [], [], [], [], []
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if not isinstance(batch, Mapping) or not {"clip", "label", "video_idx", "clip_idx"} <= set(batch):
                raise ValueError(
                    f"{type(datamodule).__name__}.{loaders[stage]}() must yield dict batches with "
                    "'clip', 'label', 'video_idx', 'clip_idx'"
                )
            batch = _batch_to(batch, device)
            logits = model(batch["clip"])  # (N, K)
            scores.append(torch.softmax(logits.float(), dim=1).cpu())
            labels.append(batch["label"].long().cpu())
            videos.append(batch["video_idx"].long().cpu())
            clips.append(batch["clip_idx"].long().cpu())
            n = batch["label"].shape[0]
            valids.append(batch["valid"].bool().cpu() if "valid" in batch else torch.ones(n, dtype=torch.bool))
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError(f"the {stage} loader of {type(datamodule).__name__} yielded no batch")
    score = torch.cat(scores)
    out = {
        "scores": score,
        "labels": torch.cat(labels),
        "video_idx": torch.cat(videos),
        "clip_idx": torch.cat(clips),
        "valid": torch.cat(valids),
        "num_classes": int(score.shape[1]),
        "classes": list(getattr(datamodule, "classes", None) or []),
        "stage": stage,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return path


def clip_predictions_from_checkpoint(
    checkpoint: PathLike,
    config: PathLike,
    path: PathLike,
    stage: str = "test",
    overrides: Optional[Mapping[str, Any]] = None,
    device: Union[str, torch.device] = "cpu",
) -> Path:
    """:func:`save_clip_predictions` for a trained run: the ``P3DClassifier`` in ``checkpoint``
    on the data of the experiment YAML ``config`` (``overrides``: dotted keys, as
    ``{"data.root": "/data/UCF101"}``). Returns ``path``.

    The checkpoint is read with ``weights_only=True`` (:func:`p3d_lightning.experiment.load_run`):
    a file from elsewhere can hold tensors and plain values, never code. The command-line form is
    ``p3d-report clip-predictions``.
    """
    # imported here: only this function needs Lightning and the experiment schema
    from p3d_lightning.experiment import load_run

    model, datamodule = load_run(checkpoint, config, overrides=overrides)
    return save_clip_predictions(model, datamodule, path, stage=stage, device=device)


def load_clip_predictions(path: PathLike) -> Dict[str, Any]:
    """Read a file written by :func:`save_clip_predictions` (checks its keys and shapes).

    Safe on untrusted files (``torch.load(weights_only=True)``: tensors and plain values only);
    a corrupt file or one that would unpickle other objects raises ``ValueError`` naming it.
    """
    from p3d_lightning.models.weights import read_torch_file

    path = Path(path)
    hint = "write them with reports.save_clip_predictions or `p3d-report clip-predictions`"
    data = read_torch_file(path, "clip predictions", hint)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a dict of clip predictions; {hint}")
    need = ("scores", "labels", "video_idx", "clip_idx")
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(need)} (see save_clip_predictions)")
    not_tensors = [k for k in need if not isinstance(data[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: {not_tensors} are not tensors; expected a file written by save_clip_predictions")
    m = data["scores"].shape[0]
    for key in need[1:]:
        if data[key].shape != (m,):
            raise ValueError(f"{path}: '{key}' has shape {tuple(data[key].shape)}, expected ({m},) like 'scores'")
    return data


def protocol_metrics(predictions: Mapping[str, Any]) -> Dict[str, float]:
    """Table 2's protocol from per-clip scores: clip hit@1, video hit@1, video hit@5 (percent).

    Clip hit@1 counts every clip once; video hit@k averages the softmax scores of all clips of
    a video, then ranks. Repeated ``(video_idx, clip_idx)`` pairs (padding of a distributed
    sampler) count once. Hit@5 on fewer than 5 classes is hit@K (``top_k_video`` says which).
    Clips marked invalid (``valid`` False: they failed to decode) are left out, and a video
    with no valid clip counts as a miss, as in ``MultiClipAccuracy``. Also returns
    ``num_clips`` (valid clips), ``num_videos``, ``num_classes``, ``num_failed_clips`` and
    ``num_failed_videos``. Files written before ``valid`` existed count every clip as valid.
    """
    from p3d_lightning.metrics import dedup_clips, topk_correct, video_scores

    scores = torch.as_tensor(predictions["scores"]).float()
    labels = torch.as_tensor(predictions["labels"]).long()
    video_idx = torch.as_tensor(predictions["video_idx"]).long()
    clip_idx = torch.as_tensor(predictions["clip_idx"]).long()
    valid = predictions.get("valid")
    valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else torch.as_tensor(valid).bool()
    keep = dedup_clips(video_idx, clip_idx)
    scores, labels, video_idx, valid = scores[keep], labels[keep], video_idx[keep], valid[keep]
    _, vscores, vlabels = video_scores(scores, labels, video_idx, valid)
    scored = ~torch.isnan(vscores).any(dim=1)  # videos with at least one valid clip
    vscores = torch.nan_to_num(vscores, nan=0.0)
    num_classes = int(scores.shape[1])

    def video_hit(k: int) -> float:
        return 100.0 * (topk_correct(vscores, vlabels, k) & scored).float().mean().item()

    return {
        "clip_hit1": 100.0 * topk_correct(scores[valid], labels[valid], 1).float().mean().item(),
        "video_hit1": video_hit(1),
        "video_hit5": video_hit(5),
        "top_k_video": min(5, num_classes),
        "num_clips": int(valid.sum()),
        "num_videos": int(vlabels.shape[0]),
        "num_classes": num_classes,
        "num_failed_clips": int((~valid).sum()),
        "num_failed_videos": int((~scored).sum()),
    }


def table2(ours: Mapping[str, Mapping[str, Any]], dataset: str = "ours"):
    """Table 2: the paper's Sports-1M rows, then ours, with a ``source`` column saying which.

    Args:
        ours: ``{name: protocol_metrics(...)}`` for each of our runs.
        dataset: the dataset our runs were tested on (shown in ``source``).
    """
    import pandas as pd

    rows = [
        {"method": name, "source": "paper (Sports-1M, 487 classes)", **{k: v[k] for k in ("clip_hit1", "video_hit1", "video_hit5")}}
        for name, v in TABLE2.items()
    ]
    for name, m in ours.items():
        rows.append(
            {
                "method": name,
                "source": f"ours ({dataset}, {m.get('num_classes', '?')} classes, {m.get('num_videos', '?')} videos)",
                "clip_hit1": m["clip_hit1"],
                "video_hit1": m["video_hit1"],
                "video_hit5": m["video_hit5"],
            }
        )
    return pd.DataFrame(rows)

