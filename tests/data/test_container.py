"""data/container.py: probing (real frame counts), and every kind of bad file refused with its name:
missing, empty, text, garbage, truncated, a still image renamed as a video, a directory."""
import numpy as np
import pytest

from p3d_lightning.data.container import DecodeError, VideoMeta, count_decodable_frames, probe_video, scan_frames
from p3d_lightning.data.decode import read_all_frames, read_frames
from video_utils import write_png


def test_probe(videos):
    for kind in ("avi", "mp4"):
        assert probe_video(videos[kind]) == VideoMeta(num_frames=60, fps=25.0, width=64, height=48)
    assert count_decodable_frames(videos["avi"]) == 60


def test_bad_files(tmp_path, videos):
    missing = str(tmp_path / "missing.avi")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    text = tmp_path / "text.avi"
    text.write_text("this is not a video\n" * 50)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    data = open(videos["avi"], "rb").read()
    trunc = tmp_path / "trunc.avi"
    trunc.write_bytes(data[: len(data) // 2])
    for p in (missing, empty, text, garbage, trunc):
        with pytest.raises(DecodeError, match=str(p).replace(".", r"\.")):
            probe_video(str(p))
    for p in (missing, empty, text, garbage):
        with pytest.raises(DecodeError):
            read_frames(str(p), [0])
    with pytest.raises(ValueError):
        read_frames(videos["avi"], [])


# ----------------------------------------------------------------------------- bad input the container hides


def test_image_renamed_as_video_is_refused(tmp_path):
    png = write_png(tmp_path / "still.mp4")
    assert open(png, "rb").read(4) == b"\x89PNG"
    for call in (lambda: probe_video(png), lambda: read_frames(png, [0]), lambda: read_all_frames(png),
                 lambda: scan_frames(png)):
        with pytest.raises(DecodeError, match=r"still\.mp4.*an image file \(png"):
            call()


def test_directory_named_like_a_video_is_refused(tmp_path):
    d = tmp_path / "folder.avi"
    d.mkdir()
    with pytest.raises(DecodeError, match=r"folder\.avi.*is a directory"):
        probe_video(str(d))
