"""Synthetic motion dataset: UCF101 layout, group-separated splits, determinism, and the
time-reversal property that caps a frame-level model at 50% within a pair."""
import math
import os

import numpy as np
import pytest

from p3d_lightning.data.annotations import parse_ucf101
from p3d_lightning.data.container import probe_video
from p3d_lightning.data.decode import read_all_frames
from p3d_lightning.data.synthetic import (PAIRS, _state, class_names, generate_synthetic_dataset, pair_of, render_video,
                                          sample_params)

TINY = dict(num_pairs=2, videos_per_class=4, clips_per_group=2, size=(48, 64), num_frames=20, num_workers=1,
            progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "synthetic")
    info = generate_synthetic_dataset(root, **TINY)
    return root, info


def test_ucf101_layout_and_splits(tiny):
    root, info = tiny
    assert info["generated"] and info["num_train"] == 8 and info["num_test"] == 8
    assert open(os.path.join(root, "classInd.txt")).read().splitlines() == [
        "1 MoveRight", "2 MoveLeft", "3 RotateClockwise", "4 RotateAnticlockwise"]
    first = open(os.path.join(root, "trainlist01.txt")).readline().split()
    assert first == ["MoveRight/v_MoveRight_g02_c01.avi", "1"]
    ann = parse_ucf101(root, 1)
    assert ann.classes == class_names(2)
    groups = lambda recs: {r.video_id.split("_g")[1][:2] for r in recs}  # noqa: E731
    assert groups(ann.test) == {"01"} and groups(ann.train) == {"02"}  # groups never straddle splits
    assert sorted({r.label for r in ann.train}) == [0, 1, 2, 3]
    for r in ann.train + ann.test:
        assert probe_video(r.path).num_frames == 20
        assert probe_video(r.path).width == 64
    # an existing dataset is left alone
    assert generate_synthetic_dataset(root, **TINY)["generated"] is False


def test_deterministic(tiny, tmp_path):
    root, _ = tiny
    other = str(tmp_path / "again")
    generate_synthetic_dataset(other, **TINY)
    rel = "RotateAnticlockwise/v_RotateAnticlockwise_g01_c02.avi"
    assert (read_all_frames(os.path.join(root, rel)) == read_all_frames(os.path.join(other, rel))).all()


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_reversed_video_is_a_video_of_the_pair_class(pair):
    rng = np.random.default_rng(pair)
    p = sample_params(rng, pair, 48, 64, 20)
    forward = render_video(p)  # class 2 * pair
    backward = render_video(p, reverse=True)  # class 2 * pair + 1
    assert np.array_equal(backward, forward[::-1])
    # same frames, different order: identical frame-level distribution -> 50% ceiling in a pair
    key = lambda v: sorted(f.tobytes() for f in v)  # noqa: E731
    assert key(forward) == key(backward)
    assert pair_of(2 * pair) == 2 * pair + 1 and pair_of(2 * pair + 1) == 2 * pair


def test_pairs_have_distinct_shapes_and_motion_is_large():
    assert len({s for *_, s in PAIRS}) == len(PAIRS)
    for pair in range(len(PAIRS)):
        for seed in range(5):
            p = sample_params(np.random.default_rng(seed), pair, 120, 160, 30)
            v = render_video(p).astype(np.int16)
            moved = (np.abs(v[1:] - v[:-1]).sum(-1) > 30).mean(axis=(1, 2))
            assert moved.min() > 0.005, (PAIRS[pair][0], moved.min())  # every frame pair visibly differs


def test_direction_semantics():
    h, w = 120, 160
    p = sample_params(np.random.default_rng(0), 0, h, w, 10)  # MoveRight
    xs = [_state(p, t)[0] for t in range(10)]
    steps = [((b - a + w / 2) % w) - w / 2 for a, b in zip(xs, xs[1:])]
    assert all(s > 0.03 * h for s in steps)  # moves right by > 3% of the short side per frame
    p = sample_params(np.random.default_rng(0), 3, h, w, 10)  # MoveDown
    ys = [_state(p, t)[1] for t in range(10)]
    assert all(((b - a + h / 2) % h) - h / 2 > 0 for a, b in zip(ys, ys[1:]))
    p = sample_params(np.random.default_rng(0), 1, h, w, 10)  # RotateClockwise (y down)
    angles = [_state(p, t)[2] for t in range(10)]
    assert all(math.degrees(b - a) >= 8 for a, b in zip(angles, angles[1:]))
    p = sample_params(np.random.default_rng(0), 2, h, w, 40)  # Grow: sawtooth, mostly increasing
    radii = [_state(p, t)[3] for t in range(40)]
    ups = sum(b > a for a, b in zip(radii, radii[1:]))
    assert ups >= 33


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        generate_synthetic_dataset(str(tmp_path / "x"), size=(33, 48))


def test_a_missing_synthetic_root_is_generated_only_when_asked(tmp_path):
    """A mistyped root is an error naming it, not a fresh set of videos in a new folder."""
    import pytest

    from p3d_lightning.data.synthetic import ensure_synthetic_dataset

    typo = tmp_path / "synthtic"
    with pytest.raises(FileNotFoundError, match="synthtic.*p3d-synth.*synthetic_generate"):
        ensure_synthetic_dataset(str(typo), generate=False, progress=False)
    assert not typo.exists()
    ensure_synthetic_dataset(str(typo), generate=True, progress=False, num_pairs=1, videos_per_class=2,
                             clips_per_group=1, size=(24, 32), num_frames=8, num_workers=1)
    assert (typo / "classInd.txt").is_file()
