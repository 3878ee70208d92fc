"""read_frames exactness against full sequential decode (.avi mpeg4, .mp4 H.264 with B-frames),
in-decoder resizing, probing, and errors on bad files."""
import random

import numpy as np
import pytest
import torch

from p3d_lightning.data.decode import (DecodeError, FrameScan, VideoMeta, count_decodable_frames, output_size, probe_video,
                                       read_all_frames, read_frames, scan_frames, write_video)


def _frames(t=60, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = np.stack([np.roll(base, 3 * i, axis=1) for i in range(t)])
    out[:, :8, :8] = (np.arange(t) * 4 % 256)[:, None, None, None]  # frame counter patch
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("dec")
    fr = _frames()
    avi, mp4 = str(d / "a.avi"), str(d / "b.mp4")
    write_video(avi, fr, codec="mpeg4", gop_size=12)  # UCF101-like keyframe interval
    write_video(mp4, fr, codec="libx264", gop_size=25, bframes=3)  # B-frames: decode order != display order
    return {"avi": avi, "mp4": mp4, "frames": fr}


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


def test_mp4_has_b_frames(videos):
    import av

    with av.open(videos["mp4"]) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert pts != sorted(pts)  # packets are stored out of presentation order


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


def test_write_video_validates(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(str(tmp_path / "x.avi"), np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(str(tmp_path / "x.avi"), np.zeros((2, 16, 16, 3), np.float32))


# ----------------------------------------------------------------------------- bad input the container hides


def write_png(path, h=48, w=64):
    """A real PNG (PyAV's image2 muxer), at whatever name ``path`` has (e.g. ``x.mp4``)."""
    import av

    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        for packet in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 128, np.uint8), format="rgb24")):
            c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return str(path)


def corrupt_middle(src, dst, at=0.4, n=400):
    """Copy ``src`` with ``n`` bytes at ``at`` of its length zeroed: damaged frames, intact container."""
    data = bytearray(open(src, "rb").read())
    start = int(len(data) * at)
    data[start:start + n] = bytes(n)
    open(dst, "wb").write(bytes(data))
    return str(dst)


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
    write_video(path, _frames(t=48), codec=codec, gop_size=12, bframes=bframes)
    rng = random.Random(3)
    for _ in range(30):
        s = rng.randrange(48 - 8)
        assert read_frames(path, list(range(s, s + 8))).shape == (8, 48, 64, 3)  # no DecodeError
    assert scan_frames(path).corrupt == ()
