"""Clip-level and video-level accuracy for multi-clip evaluation.

Evaluation follows the paper's protocol: every video is cut into ``num_eval_clips`` clips
(20 for P3D, 25 single frames for the ResNet-50 baseline); each clip is one sample. Two
numbers are reported:

- clip accuracy: top-k over all clips, micro averaged (every clip counts once);
- video accuracy: the softmax scores of all clips of a video are averaged, then ranked.

Under DDP, Lightning's ``DistributedSampler`` pads the last batch of every rank with
repeated samples so all ranks see the same number of batches. :class:`MultiClipAccuracy`
keeps, per clip, its ``(video_idx, clip_idx)`` key and drops repeated keys after the
states of all ranks are gathered, so the result is exactly the single-process one.

Clips that failed to decode (``valid`` False in the batch, see ``VideoClipDataset``) keep their
own video's key but are left out of both accuracies: clip accuracy is over the valid clips
only, and a video's score is the mean over its valid clips. A video none of whose clips
decoded has no prediction; it stays in the video-accuracy denominator and counts as a miss
(so a decode failure can only lower accuracy, and ``num_videos`` is always the number of
videos evaluated). ``num_failed_clips`` / ``num_failed_videos`` report how many; the module logs
them as ``<stage>/failed_clips`` and ``<stage>/failed_videos`` and warns with the file names.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["MultiClipAccuracy", "dedup_clips", "video_scores", "topk_correct"]


def topk_correct(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Boolean (N,): whether ``labels`` is among the ``k`` highest ``scores`` (N, K) of each row.

    ``k`` is clamped to the number of classes, so top-5 on a 3-class problem is top-3.
    Ties are broken by ``torch.topk`` (lowest index first on CPU).
    """
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # (N, k)
    return (top == labels[:, None]).any(dim=1)


def dedup_clips(video_idx: Tensor, clip_idx: Tensor) -> Tensor:
    """Indices of the first occurrence of every distinct ``(video_idx, clip_idx)`` pair.

    Returned indices are sorted, so the kept rows keep their original order.
    """
    if video_idx.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=video_idx.device)
    keys = torch.stack([video_idx.long(), clip_idx.long()], dim=1)  # (M, 2)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)  # inverse: (M,) key id per row
    num_keys = int(inverse.max()) + 1
    positions = torch.arange(keys.shape[0], device=keys.device)
    # the smallest row position carrying each key = its first occurrence
    first = torch.full((num_keys,), keys.shape[0], dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return first.sort().values


def video_scores(
    scores: Tensor, labels: Tensor, video_idx: Tensor, valid: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor]:
    """Average clip ``scores`` (M, K) per video.

    Returns ``(videos, mean_scores, video_labels)``: the sorted distinct video indices (V,),
    their mean clip scores (V, K) and labels (V,). Raises ``ValueError`` when clips of one
    video disagree on the label (a data bug that would make video accuracy meaningless).

    ``valid`` (M,) bool, optional: only valid clips enter the mean. A video with no valid
    clip is still listed (its label comes from its invalid clips) with a row of NaN scores.
    """
    videos, inverse = torch.unique(video_idx.long(), return_inverse=True)  # (V,), (M,)
    num_videos = videos.numel()
    used = torch.ones_like(inverse, dtype=torch.bool) if valid is None else valid.bool()
    sums = torch.zeros(num_videos, scores.shape[1], dtype=torch.float64, device=scores.device)
    sums.index_add_(0, inverse[used], scores[used].double())
    counts = torch.bincount(inverse[used], minlength=num_videos)  # 0 only for all-invalid videos: 0/0 = NaN
    video_labels = torch.full((num_videos,), -1, dtype=torch.long, device=scores.device)
    video_labels = video_labels.scatter(0, inverse, labels.long())
    if not torch.equal(video_labels[inverse], labels.long()):
        mismatch = (video_labels[inverse] != labels.long()).nonzero().flatten()
        bad = int(video_idx[mismatch[0]])
        raise ValueError(f"clips of video_idx={bad} carry different labels; every clip of a video must share its label")
    return videos, sums / counts[:, None], video_labels


class MultiClipAccuracy(Metric):
    """Clip-level (micro) and video-level top-k accuracy, exact under DDP.

    Args:
        num_classes: number of classes K.
        top_k: the k values to report (default 1 and 5; each clamped to K).

    ``update(scores, labels, video_idx, clip_idx, valid=None)`` takes per-clip scores (N, K)
    (softmax probabilities; logits work for clip accuracy but video averaging is defined on
    probabilities), labels (N,), the clip keys and, optionally, ``valid`` (N,) bool marking
    clips that decoded (default: all). ``compute()`` returns a dict ``{"clip_acc1",
    "clip_acc5", "video_acc1", "video_acc5", "num_clips", "num_videos", "num_failed_clips",
    "num_failed_videos"}`` computed on the de-duplicated clips of all ranks:

    - ``num_clips``: valid clips scored (the clip-accuracy denominator);
    - ``num_videos``: videos seen, including those without a valid clip (the video-accuracy
      denominator; such a video counts as a miss);
    - ``num_failed_clips``: clips marked invalid; ``num_failed_videos``: videos none of whose
      clips were valid.

    After ``compute()``, ``failed_clips`` holds the ``(video_idx, clip_idx)`` keys (F, 2) of the
    invalid clips (identical on every rank), so a caller can name the files.

    Memory: the per-clip scores are kept until ``compute`` (M x K floats per rank, all ranks'
    after gathering): UCF101 test 20 clips x 3.8K videos x 101 classes ~ 30 MB.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"MultiClipAccuracy: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.top_k = tuple(int(k) for k in top_k)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("video_idx", default=[], dist_reduce_fx="cat")
        self.add_state("clip_idx", default=[], dist_reduce_fx="cat")
        # int64 rather than bool: every backend (gloo included) can all-gather it
        self.add_state("valid", default=[], dist_reduce_fx="cat")
        self.failed_clips = torch.zeros(0, 2, dtype=torch.long)

    def update(  # type: ignore[override]
        self, scores: Tensor, labels: Tensor, video_idx: Tensor, clip_idx: Tensor, valid: Optional[Tensor] = None
    ) -> None:
        """Add a batch of clips: scores (N, K), labels / video_idx / clip_idx / valid (N,)."""
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"MultiClipAccuracy.update: scores must be (N, {self.num_classes}), got {tuple(scores.shape)}"
            )
        n = scores.shape[0]
        if valid is None:
            valid = torch.ones(n, dtype=torch.bool, device=scores.device)
        for name, t in (("labels", labels), ("video_idx", video_idx), ("clip_idx", clip_idx), ("valid", valid)):
            if t.shape != (n,):
                raise ValueError(f"MultiClipAccuracy.update: {name} must be ({n},), got {tuple(t.shape)}")
        self.scores.append(scores.detach().float())
        self.labels.append(labels.detach().long())
        self.video_idx.append(video_idx.detach().long())
        self.clip_idx.append(clip_idx.detach().long())
        self.valid.append(valid.detach().long())

    @staticmethod
    def _cat(state) -> Tensor:
        # after a DDP sync a list state is already one tensor
        if isinstance(state, Tensor):
            return state
        return torch.cat(state) if len(state) else torch.zeros(0)

    def compute(self) -> Dict[str, Tensor]:
        """Accuracies (floats in [0, 1]) on the de-duplicated clips; NaN when nothing was seen.

        Clip accuracy is NaN when no clip was valid; video accuracy is then 0 (every video a miss).
        """
        scores = self._cat(self.scores)
        out: Dict[str, Tensor] = {}
        if scores.numel() == 0:
            nan = torch.tensor(float("nan"))
            for k in self.top_k:
                out[f"clip_acc{k}"] = nan
                out[f"video_acc{k}"] = nan
            for key in ("num_clips", "num_videos", "num_failed_clips", "num_failed_videos"):
                out[key] = torch.tensor(0)
            self.failed_clips = torch.zeros(0, 2, dtype=torch.long)
            return out
        labels = self._cat(self.labels)
        video_idx = self._cat(self.video_idx)
        clip_idx = self._cat(self.clip_idx)
        valid = self._cat(self.valid).bool()
        keep = dedup_clips(video_idx, clip_idx)
        scores, labels, video_idx, clip_idx, valid = (t[keep] for t in (scores, labels, video_idx, clip_idx, valid))
        _, vscores, vlabels = video_scores(scores, labels, video_idx, valid)  # (V, K), (V,)
        _, inverse = torch.unique(video_idx, return_inverse=True)  # (M,) video of each clip
        scored = torch.bincount(inverse[valid], minlength=vlabels.shape[0]) > 0  # (V,) has a valid clip
        vscores = torch.where(scored[:, None], vscores, torch.zeros_like(vscores))  # NaN rows -> 0, masked below
        for k in self.top_k:
            out[f"clip_acc{k}"] = topk_correct(scores[valid], labels[valid], k).float().mean()
            out[f"video_acc{k}"] = (topk_correct(vscores, vlabels, k) & scored).float().mean()
        out["num_clips"] = valid.sum()
        out["num_videos"] = torch.tensor(vlabels.shape[0])
        out["num_failed_clips"] = (~valid).sum()
        out["num_failed_videos"] = (~scored).sum()
        self.failed_clips = torch.stack([video_idx[~valid], clip_idx[~valid]], dim=1)  # (F, 2)
        return out
