"""data/encode.py: write_video makes the streams the datasets ship (B-frames in the .mp4) and refuses
frames it cannot encode. (transcode_video: tests/data/test_prep.py, test_bench_decode.py.)"""
import numpy as np
import pytest

from p3d_lightning.data.encode import write_video


def test_mp4_has_b_frames(videos):
    import av

    with av.open(videos["mp4"]) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert pts != sorted(pts)  # packets are stored out of presentation order


def test_write_video_validates(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(str(tmp_path / "x.avi"), np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(str(tmp_path / "x.avi"), np.zeros((2, 16, 16, 3), np.float32))
