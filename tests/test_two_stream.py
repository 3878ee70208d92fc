"""two_stream.py: weighted late fusion of an RGB and a flow run's per-video scores.
(The p3d-two-stream command: tests/commands/test_two_stream.py.)"""
import pytest
import torch

from p3d_lightning.two_stream import align_streams, format_report, fuse_scores, two_stream_report, video_topk

# 3 classes; the RGB stream gets v0 and v2 right, the flow stream v1 and v2.
RGB = {"video_ids": ["v0", "v1", "v2", "v3"], "labels": torch.tensor([0, 1, 2, 0]),
       "scores": torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.2, 0.7, 0.1]])}
FLOW = {"video_ids": ["v2", "v1", "v0", "v9"], "labels": torch.tensor([2, 1, 0, 1]),
        "scores": torch.tensor([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.3, 0.4, 0.3]])}


def test_fusion_equals_the_hand_computed_weighted_average():
    a, b = torch.tensor([[0.2, 0.8]]), torch.tensor([[0.6, 0.4]])
    assert torch.allclose(fuse_scores(a, b), torch.tensor([[0.4, 0.6]], dtype=torch.float64))
    assert torch.allclose(fuse_scores(a, b, (1, 3)), torch.tensor([[(0.2 + 1.8) / 4, (0.8 + 1.2) / 4]], dtype=torch.float64))
    assert torch.equal(fuse_scores(a, b, (1, 0)), a.double())
    with pytest.raises(ValueError, match="weights must be >= 0"):
        fuse_scores(a, b, (0, 0))
    with pytest.raises(ValueError, match="differ in shape"):
        fuse_scores(a, torch.zeros(1, 3))


def test_report_matches_videos_by_id():
    s_rgb, s_flow, labels, ids, missing = align_streams(RGB, FLOW)
    assert ids == ["v0", "v1", "v2"] and labels.tolist() == [0, 1, 2]
    assert torch.equal(s_flow[0], FLOW["scores"][2].double())  # v0's flow row
    assert missing == {"flow": ["v3"], "rgb": ["v9"]}
    rep = two_stream_report(RGB, FLOW)
    acc = {r["stream"]: r["video_acc1"] for r in rep["rows"]}
    # fused, by hand: v0 (0.45, 0.35, 0.2) -> 0 right; v1 (0.3, 0.6, 0.1) -> 1 right; v2 -> 2 right
    assert acc == pytest.approx({"rgb": 2 / 3, "flow": 2 / 3, "fused": 1.0})
    assert rep["num_videos"] == 3 and video_topk(s_rgb, labels, 5) == 1.0
    text = format_report(rep)
    assert "| fused | 1 : 1 | 3 | 100.0% |" in text and "missing from the flow features" in text
    bad = dict(FLOW, labels=torch.tensor([2, 0, 0, 1]))
    with pytest.raises(ValueError, match="video 'v1' has label 1 in the RGB features but 0"):
        align_streams(RGB, bad)
