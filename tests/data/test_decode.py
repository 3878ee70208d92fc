"""data/decode.py: read_frames exactness against full sequential decode (.avi mpeg4, .mp4 H.264 with
B-frames), in-decoder resizing, corrupt frames flagged not concealed, and ``read_clips`` (one pass
for a video's evaluation clips) equal to per-clip ``read_frames`` exactly."""
import random

import numpy as np
import pytest
import torch

from p3d_lightning.data.container import DecodeError, FrameScan, keyframe_indices, probe_video, scan_frames
from p3d_lightning.data.decode import output_size, read_all_frames, read_clips, read_frames
from p3d_lightning.data.encode import write_video
from p3d_lightning.data.sampling import eval_clip_indices
from video_utils import corrupt_middle, counter_frames


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_random_indices_match_sequential_decode(videos, kind):
    path = videos[kind]
    full = read_all_frames(path)
    assert full.shape == (60, 48, 64, 3) and full.dtype == torch.uint8
    rng = random.Random(1)
    for k in range(40):
        idx = [rng.randrange(60) for _ in range(rng.randint(1, 16))]
        if k % 2:
            s = rng.randrange(45)
            idx = list(range(s, s + 16))
        assert torch.equal(read_frames(path, idx), full[idx]), idx
    assert torch.equal(read_frames(path, [5, 5, 3, 59, 0]), full[[5, 5, 3, 59, 0]])  # repeats, any order
    assert torch.equal(read_frames(path, [30, 31], seek=False), full[[30, 31]])


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_resize_inside_decoder(videos, kind):
    path = videos[kind]
    assert read_frames(path, [0, 10], size=(30, 40)).shape == (2, 30, 40, 3)
    assert read_frames(path, [0], size=24).shape == (1, 24, 32, 3)  # short side
    small = read_all_frames(path, size=(30, 40))
    assert torch.equal(read_frames(path, [7, 40], size=(30, 40)), small[[7, 40]])


def test_output_size():
    assert output_size(320, 240, None) == (240, 320)
    assert output_size(320, 240, 120) == (120, 160)
    assert output_size(240, 320, 120) == (160, 120)
    assert output_size(320, 240, (182, 242)) == (182, 242)


def test_index_past_end_repeats_last_frame(videos):
    full = read_all_frames(videos["avi"])
    out = read_frames(videos["avi"], [58, 59, 60, 61])
    assert torch.equal(out[2], full[59]) and torch.equal(out[3], full[59])


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_corrupt_frames_are_flagged_not_concealed(videos, tmp_path, kind):
    bad = corrupt_middle(videos[kind], tmp_path / f"bad.{kind}")
    probe_video(bad)  # the container is fine: probing (what indexing does) cannot see the damage
    scan = scan_frames(bad)
    assert isinstance(scan, FrameScan) and scan.decoded >= 55 and len(scan.corrupt) >= 1
    first = scan.corrupt[0]
    # a clip whose decoding passes the corrupt frame raises, naming the file
    with pytest.raises(DecodeError, match=rf"bad\.{kind}.*frame {first} is corrupt"):
        read_frames(bad, list(range(max(0, first - 2), first + 3)))
    # a clip decoded entirely before it (from frame 0) is exact
    if first >= 6:
        assert torch.equal(read_frames(bad, [0, 1, 2]), read_frames(videos[kind], [0, 1, 2]))
    assert scan_frames(videos[kind]) == FrameScan(decoded=60, corrupt=())


@pytest.mark.parametrize("codec,ext,bframes", [("mpeg4", "avi", 0), ("mpeg4", "avi", 2), ("libx264", "mp4", 2)])
def test_clean_videos_have_no_corrupt_frames(tmp_path, codec, ext, bframes):
    """Seeking into clean streams (B-frames included) never looks like corruption: no false alarms."""
    path = str(tmp_path / f"clean.{ext}")
    write_video(path, counter_frames(t=48), codec=codec, gop_size=12, bframes=bframes)
    rng = random.Random(3)
    for _ in range(30):
        s = rng.randrange(48 - 8)
        assert read_frames(path, list(range(s, s + 8))).shape == (8, 48, 64, 3)  # no DecodeError
    assert scan_frames(path).corrupt == ()


# ----------------------------------------------------------------------------- several clips from one pass


def _panning(n=40, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w + n, 3), dtype=np.uint8)
    return np.stack([base[:, t:t + w] for t in range(n)])  # panning texture: every frame differs


@pytest.fixture(scope="module")
def eval_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaldecode")
    avi, mp4 = str(d / "a.avi"), str(d / "b.mp4")
    write_video(avi, _panning(), fps=25, codec="mpeg4", gop_size=12)
    write_video(mp4, _panning(seed=1), fps=25, codec="libx264", gop_size=40, bframes=3)  # one keyframe, B-frames
    return avi, mp4


@pytest.mark.parametrize("which", [0, 1])
def test_read_clips_equals_per_clip_reads(eval_videos, which):
    path = eval_videos[which]
    clips = [eval_clip_indices(40, 8, 1, 20, k) for k in range(20)]
    clips += [[39, 45, 3, 3], list(range(0, 16, 2)), [30]]  # past the end, repeats, any order, strided
    got = read_clips(path, clips, size=(20, 26))
    assert len(got) == len(clips)
    for c, g in zip(clips, got):
        assert torch.equal(g, read_frames(path, c, size=(20, 26)))
    # clips far apart are separate runs (one seek each) and still exact; keyframes=[] forces one pass
    far = [[0, 1], [30, 31]]
    for kf in (None, []):
        for c, g in zip(far, read_clips(path, far, keyframes=kf)):
            assert torch.equal(g, read_frames(path, c))
    assert keyframe_indices(eval_videos[0]) == [0, 12, 24, 36] and keyframe_indices(eval_videos[1]) == [0]
    with pytest.raises(ValueError, match="non-empty"):
        read_clips(path, [[]])
