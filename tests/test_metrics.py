"""Clip- and video-level accuracy: duplicates, uneven clips per video, top-5, DDP gathering."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from p3d_lightning.metrics import MultiClipAccuracy, dedup_clips, topk_correct, video_scores


def _onehot(classes, k=6, hi=0.9):
    s = torch.full((len(classes), k), (1 - hi) / (k - 1))
    s[torch.arange(len(classes)), torch.tensor(classes)] = hi
    return s


def test_topk_correct_and_clamp():
    scores = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    labels = torch.tensor([1, 2])
    assert topk_correct(scores, labels, 1).tolist() == [False, False]
    assert topk_correct(scores, labels, 2).tolist() == [True, False]
    assert topk_correct(scores, labels, 5).tolist() == [True, True]  # k clamped to 3 classes


def test_dedup_keeps_first_occurrence_in_order():
    v = torch.tensor([3, 1, 3, 1, 2, 3])
    c = torch.tensor([0, 0, 0, 1, 0, 1])
    assert dedup_clips(v, c).tolist() == [0, 1, 3, 4, 5]


def test_video_average_differs_from_clip_vote():
    # video 0 (label 0): two weak correct clips, one confident wrong clip -> average is wrong
    scores = torch.tensor([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25], [0.0, 1.0, 0.0]])
    m = MultiClipAccuracy(3, top_k=(1, 2))
    m.update(scores, torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]))
    out = m.compute()
    assert out["clip_acc1"].item() == pytest.approx(2 / 3)
    assert out["video_acc1"].item() == 0.0  # mean = [0.27, 0.57, 0.17]
    assert out["video_acc2"].item() == 1.0


def test_uneven_clips_per_video_and_top5():
    # video 0: 1 clip correct; video 1: 3 clips, label 4 ranks 2nd on average; video 2: 2 clips wrong
    k = 6
    scores = torch.cat([
        _onehot([2]),                                         # v0, label 2
        torch.tensor([[0.5, 0, 0, 0, 0.4, 0.1]] * 3),         # v1, label 4: top-2, in top-5
        torch.tensor([[0.0, 0, 0, 0, 0, 1.0]] * 2),           # v2, label 0: tied zeros
    ])
    labels = torch.tensor([2, 4, 4, 4, 0, 0])
    vid = torch.tensor([0, 1, 1, 1, 2, 2])
    clip = torch.tensor([0, 0, 1, 2, 0, 1])
    m = MultiClipAccuracy(k)
    m.update(scores[:4], labels[:4], vid[:4], clip[:4])  # split over two batches
    m.update(scores[4:], labels[4:], vid[4:], clip[4:])
    out = m.compute()
    assert out["num_videos"].item() == 3 and out["num_clips"].item() == 6
    assert out["video_acc1"].item() == pytest.approx(1 / 3)
    assert out["clip_acc1"].item() == pytest.approx(1 / 6)
    assert out["clip_acc5"].item() == pytest.approx(6 / 6)  # label 0 ties at 0 with others: topk picks index 0 first
    assert out["video_acc5"].item() == pytest.approx(3 / 3)


def test_duplicates_are_ignored():
    scores = torch.cat([_onehot([0, 1]), _onehot([2])])
    labels = torch.tensor([0, 0, 2])
    vid, clip = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    ref = MultiClipAccuracy(6)
    ref.update(scores, labels, vid, clip)
    dup = MultiClipAccuracy(6)
    dup.update(scores, labels, vid, clip)
    dup.update(scores[:1], labels[:1], vid[:1], clip[:1])  # padded repeat of the first sample
    dup.update(scores[1:2], labels[1:2], vid[1:2], clip[1:2])
    a, b = ref.compute(), dup.compute()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert b["num_clips"].item() == 3


def test_invalid_clips_are_excluded_and_all_failed_videos_are_misses():
    # v0: clip 0 correct, clip 1 failed (its zero-clip scores are confidently wrong and must not count)
    # v1: both clips failed; v2: one correct clip
    scores = torch.cat([_onehot([0]), _onehot([3]), _onehot([1, 1]), _onehot([2])])
    labels = torch.tensor([0, 0, 1, 1, 2])
    vid, clip = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 0])
    valid = torch.tensor([True, False, False, False, True])
    m = MultiClipAccuracy(6)
    m.update(scores, labels, vid, clip, valid)
    out = m.compute()
    assert out["clip_acc1"].item() == 1.0 and out["num_clips"].item() == 2  # over the 2 valid clips
    assert out["video_acc1"].item() == pytest.approx(2 / 3)  # v1 stays in the denominator as a miss
    assert out["video_acc5"].item() == pytest.approx(2 / 3)
    assert out["num_videos"].item() == 3
    assert out["num_failed_clips"].item() == 3 and out["num_failed_videos"].item() == 1
    assert m.failed_clips.tolist() == [[0, 1], [1, 0], [1, 1]]
    # the same as never having seen the failed clip of v0
    ref = MultiClipAccuracy(6)
    ref.update(scores[[0, 4]], labels[[0, 4]], vid[[0, 4]], clip[[0, 4]])
    assert ref.compute()["clip_acc1"] == out["clip_acc1"]
    # video_scores: the mean is over valid clips; a video without one has NaN scores
    videos, vs, vl = video_scores(scores, labels, vid, valid)
    assert videos.tolist() == [0, 1, 2] and vl.tolist() == [0, 1, 2]
    torch.testing.assert_close(vs[0], scores[0].double())
    assert torch.isnan(vs[1]).all()
    # nothing valid at all: no clip accuracy, every video a miss
    none = MultiClipAccuracy(6)
    none.update(scores, labels, vid, clip, torch.zeros(5, dtype=torch.bool))
    out = none.compute()
    assert torch.isnan(out["clip_acc1"]) and out["video_acc1"].item() == 0.0 and out["num_failed_videos"].item() == 3
    with pytest.raises(ValueError, match=r"valid must be \(5,\)"):
        none.update(scores, labels, vid, clip, torch.ones(4, dtype=torch.bool))


def test_label_disagreement_is_an_error():
    with pytest.raises(ValueError, match="video_idx=7"):
        video_scores(torch.rand(2, 3), torch.tensor([0, 1]), torch.tensor([7, 7]))


def test_empty_and_bad_shapes():
    m = MultiClipAccuracy(4)
    assert torch.isnan(m.compute()["video_acc1"])
    with pytest.raises(ValueError, match=r"scores must be \(N, 4\)"):
        m.update(torch.rand(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, shards, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        m = MultiClipAccuracy(6)
        scores, labels, vid, clip, valid = shards[rank]
        m.update(scores, labels, vid, clip, valid)
        out = m.compute()
        queue.put((rank, {k: v.item() for k, v in out.items()}, m.failed_clips.tolist()))
    finally:
        dist.destroy_process_group()


def test_ddp_gather_dedups_sampler_padding():
    """Two gloo processes, interleaved DistributedSampler-style shards with a padded duplicate,
    one clip that failed to decode and one video (3) whose only clip failed."""
    g = torch.Generator().manual_seed(0)
    n = 7  # not divisible by 2: the sampler pads with sample 0
    scores = torch.rand(n, 6, generator=g).softmax(1)
    vid = torch.tensor([0, 0, 1, 1, 1, 2, 3])
    labels = torch.tensor([1, 1, 3, 3, 3, 0, 5])
    clip = torch.tensor([0, 1, 0, 1, 2, 0, 0])
    valid = torch.tensor([True, True, True, False, True, True, False])
    ref = MultiClipAccuracy(6)
    ref.update(scores, labels, vid, clip, valid)
    expected = {k: v.item() for k, v in ref.compute().items()}
    assert expected["num_failed_clips"] == 2 and expected["num_failed_videos"] == 1 and expected["num_videos"] == 4

    order = list(range(n)) + [0]  # padded to 8
    shards = []
    for r in range(2):
        idx = torch.tensor(order[r::2])
        shards.append((scores[idx], labels[idx], vid[idx], clip[idx], valid[idx]))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(2, _free_port(), shards, queue), nprocs=2, start_method="spawn")
    results = {rank: (out, failed) for rank, out, failed in (queue.get(timeout=60) for _ in range(2))}
    for rank in (0, 1):
        out, failed = results[rank]
        assert out == pytest.approx(expected, nan_ok=True), rank
        assert sorted(failed) == [[1, 1], [3, 0]], rank
