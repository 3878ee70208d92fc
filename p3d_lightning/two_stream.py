"""Two-stream fusion: per-video scores of an RGB run and an optical-flow run, combined.

Each stream is a ``p3d predict`` output (:class:`~p3d_lightning.features.FeatureWriter`): per
video, the softmax scores averaged over its clips. The fused score of a video is the weighted
average ``(w_rgb * s_rgb + w_flow * s_flow) / (w_rgb + w_flow)`` of the two streams' scores
(late fusion, as two-stream networks do; equal weights by default, flow is often weighted
higher, e.g. 1 : 1.5). Videos are matched by ``video_ids``; only videos present in both files
are scored, and their labels must agree. ::

    p3d predict --config rgb.yaml  --ckpt_path best      # -> <rgb run>/features/features.pt
    p3d predict --config flow.yaml --ckpt_path best      # -> <flow run>/features/features.pt
    p3d-two-stream --rgb <rgb run>/features/features.pt --flow <flow run>/features/features.pt \\
        --weights 1 1.5

prints video top-1 (and top-5) of each stream and of the fusion. Choosing the weights on the
test set itself overstates the fused accuracy: pick them on held-out videos.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

__all__ = ["align_streams", "fuse_scores", "video_topk", "two_stream_report", "format_report"]


def fuse_scores(rgb: torch.Tensor, flow: torch.Tensor, weights: Sequence[float] = (1.0, 1.0)) -> torch.Tensor:
    """Weighted average of two ``(V, K)`` score tensors: ``(w0 * rgb + w1 * flow) / (w0 + w1)``."""
    if rgb.shape != flow.shape:
        raise ValueError(f"the two streams' scores differ in shape: rgb {tuple(rgb.shape)} vs flow {tuple(flow.shape)} "
                         "(same videos and classes needed)")
    w_rgb, w_flow = (float(w) for w in weights)
    if w_rgb < 0 or w_flow < 0 or w_rgb + w_flow <= 0:
        raise ValueError(f"fusion weights must be >= 0 and not both 0, got {tuple(weights)}")
    return (w_rgb * rgb.double() + w_flow * flow.double()) / (w_rgb + w_flow)


def video_topk(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of videos whose label is among the ``k`` highest scores (videos with label -1 left out)."""
    known = labels >= 0
    if not bool(known.any()):
        return float("nan")
    top = scores[known].topk(min(k, scores.shape[1]), dim=1).indices  # (V, k)
    return float((top == labels[known].unsqueeze(1)).any(dim=1).double().mean())


def align_streams(rgb: Dict[str, Any], flow: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[str], Dict[str, List[str]]]:
    """Scores of the videos both feature dicts hold, in the RGB file's order.

    Returns ``(rgb_scores, flow_scores, labels, video_ids, missing)`` with ``missing`` listing
    the ids only one stream has (``"flow"``: absent from flow; ``"rgb"``: absent from RGB).
    Raises ``ValueError`` naming a video whose labels differ between the streams.
    """
    for name, d in (("rgb", rgb), ("flow", flow)):
        for key in ("video_ids", "scores"):
            if key not in d:
                raise ValueError(f"{name} features lack {key!r}: expected a file written by p3d predict")
    pos = {v: i for i, v in enumerate(flow["video_ids"])}
    ids = [v for v in rgb["video_ids"] if v in pos]
    if not ids:
        raise ValueError("the RGB and flow feature files share no video id: were they predicted on the same split?")
    i_rgb = torch.tensor([i for i, v in enumerate(rgb["video_ids"]) if v in pos])
    i_flow = torch.tensor([pos[v] for v in ids])
    n_rgb, n_flow = len(rgb["video_ids"]), len(flow["video_ids"])
    lab_rgb = rgb.get("labels", torch.full((n_rgb,), -1)).long()[i_rgb]
    lab_flow = flow.get("labels", torch.full((n_flow,), -1)).long()[i_flow]
    differ = (lab_rgb >= 0) & (lab_flow >= 0) & (lab_rgb != lab_flow)
    if bool(differ.any()):
        j = int(differ.nonzero()[0])
        raise ValueError(f"video {ids[j]!r} has label {int(lab_rgb[j])} in the RGB features but {int(lab_flow[j])} in "
                         "the flow features: different class lists?")
    labels = torch.where(lab_rgb >= 0, lab_rgb, lab_flow)
    rgb_ids = set(rgb["video_ids"])
    missing = {"flow": [v for v in rgb["video_ids"] if v not in pos],
                "rgb": [v for v in flow["video_ids"] if v not in rgb_ids]}
    return rgb["scores"][i_rgb].double(), flow["scores"][i_flow].double(), labels, ids, missing


def two_stream_report(rgb: Any, flow: Any, weights: Sequence[float] = (1.0, 1.0)) -> Dict[str, Any]:
    """Video top-1/top-5 of the RGB stream, the flow stream and their fusion, on the common videos.

    ``rgb``/``flow``: feature-file paths (``p3d predict`` output) or the dicts
    :func:`p3d_lightning.features.load_features` returns.
    """
    from p3d_lightning.features import load_features

    sources = {}
    if isinstance(rgb, str):
        sources["rgb"], rgb = rgb, load_features(rgb)
    if isinstance(flow, str):
        sources["flow"], flow = flow, load_features(flow)
    s_rgb, s_flow, labels, ids, missing = align_streams(rgb, flow)
    fused = fuse_scores(s_rgb, s_flow, weights)
    rows = []
    for name, scores, w in (("rgb", s_rgb, weights[0]), ("flow", s_flow, weights[1]), ("fused", fused, None)):
        rows.append({"stream": name, "weight": None if w is None else float(w),
                     "video_acc1": video_topk(scores, labels, 1), "video_acc5": video_topk(scores, labels, 5)})
    return {"num_videos": len(ids), "weights": [float(w) for w in weights], "rows": rows,
            "missing_from_flow": missing["flow"], "missing_from_rgb": missing["rgb"], "sources": sources}


def format_report(report: Dict[str, Any]) -> str:
    """A Markdown table of :func:`two_stream_report`'s rows."""
    w = report["weights"]
    lines = ["| stream | weight | videos | video top-1 | video top-5 |", "| --- | --- | --- | --- | --- |"]
    for r in report["rows"]:
        weight = f"{r['weight']:g}" if r["weight"] is not None else f"{w[0]:g} : {w[1]:g}"
        lines.append(f"| {r['stream']} | {weight} | {report['num_videos']} | {100 * r['video_acc1']:.1f}% "
                     f"| {100 * r['video_acc5']:.1f}% |")
    for side in ("flow", "rgb"):
        gone = report[f"missing_from_{side}"]
        if gone:
            lines.append(f"\n{len(gone)} videos are missing from the {side} features and were left out "
                         f"(e.g. {gone[0]})")
    return "\n".join(lines)
