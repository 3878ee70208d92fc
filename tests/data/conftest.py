"""Fixtures of the data tests: the same 60 frames encoded as UCF101 and Kinetics ship them."""
import pytest

from p3d_lightning.data.encode import write_video
from video_utils import counter_frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``avi``: mpeg4 with a keyframe every 12 frames (UCF101-like); ``mp4``: H.264 with 3 B-frames
    (decode order != display order, Kinetics-like); ``frames``: what both encode."""
    d = tmp_path_factory.mktemp("dec")
    fr = counter_frames()
    avi, mp4 = str(d / "a.avi"), str(d / "b.mp4")
    write_video(avi, fr, codec="mpeg4", gop_size=12)  # UCF101-like keyframe interval
    write_video(mp4, fr, codec="libx264", gop_size=25, bframes=3)  # B-frames: decode order != display order
    return {"avi": avi, "mp4": mp4, "frames": fr}
