"""Clip index arithmetic: ranges, lengths, uniform spacing, short videos, seeding."""
import pytest

from p3d_lightning.data.sampling import (clip_indices, clip_span, derive_seed, eval_clip_indices, eval_clip_starts,
                                         train_clip_indices)


def test_train_window_in_range_and_consecutive():
    for s in range(200):
        idx = train_clip_indices(100, 16, 2, seed=s)
        assert len(idx) == 16 and 0 <= idx[0] and idx[-1] < 100
        assert all(b - a == 2 for a, b in zip(idx, idx[1:]))
    starts = {train_clip_indices(100, 16, 1, seed=s)[0] for s in range(2000)}
    assert starts == set(range(0, 85))  # every valid start, nothing beyond


def test_seeding_is_reproducible_and_varies():
    assert train_clip_indices(300, 16, 1, 123) == train_clip_indices(300, 16, 1, 123)
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    starts = {train_clip_indices(300, 16, 1, derive_seed(0, epoch, 7))[0] for epoch in range(20)}
    assert len(starts) > 10


def test_eval_uniform_spacing():
    starts = eval_clip_starts(116, 16, 1, 21)
    assert starts[0] == 0 and starts[-1] == 100 and len(starts) == 21
    assert {b - a for a, b in zip(starts, starts[1:])} == {5}
    assert eval_clip_starts(100, 16, 1, 1) == [42]  # single clip: centred
    assert eval_clip_starts(116, 16, 1, 20) == sorted(eval_clip_starts(116, 16, 1, 20))
    # 25 single frames spread over the video (2D ResNet-50 protocol)
    frames = [eval_clip_indices(250, 1, 1, 25, k) for k in range(25)]
    assert all(len(f) == 1 for f in frames) and frames[0] == [0] and frames[-1] == [249]
    with pytest.raises(ValueError):
        eval_clip_indices(100, 16, 1, 20, 20)


@pytest.mark.parametrize("policy", ["repeat_last", "loop"])
def test_short_videos_never_crash(policy):
    assert clip_span(16, 2) == 31
    for n in (1, 5, 15):
        idx = train_clip_indices(n, 16, 1, seed=3, short_policy=policy)
        assert len(idx) == 16 and all(0 <= i < n for i in idx)
        for k in range(4):
            e = eval_clip_indices(n, 16, 1, 4, k, short_policy=policy)
            assert len(e) == 16 and all(0 <= i < n for i in e)
    assert clip_indices(0, 5, 8, 1, "repeat_last") == [0, 1, 2, 3, 4, 4, 4, 4]
    assert clip_indices(0, 5, 8, 1, "loop") == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(ValueError):
        clip_indices(0, 5, 8, 1, "bogus")
