"""data/prescan.py: check_video names every kind of bad file (a probe; ``full`` also finds damaged
frames), prescan checks each file once, and all_videos lists what the datamodule's folder layout
sees. (The p3d-prescan command and the datamodule honouring its list: tests/commands/test_prescan.py.)"""
import os

from p3d_lightning.data.annotations import parse_folder
from p3d_lightning.data.container import scan_frames
from p3d_lightning.data.encode import write_video
from p3d_lightning.data.prescan import all_videos, check_video, prescan
from p3d_lightning.data.synthetic import generate_synthetic_dataset
from video_utils import corrupt_middle, counter_frames, write_png


def tiny_set(tmp_path):
    """2 classes x 4 videos of 8 frames, 32x48, under ``tmp_path/synthetic``."""
    root = tmp_path / "synthetic"
    generate_synthetic_dataset(str(root), num_pairs=1, videos_per_class=4, clips_per_group=2, size=(32, 48),
                               num_frames=8, num_workers=1, progress=False)
    return root


def bad_video_tree(root):
    """``root/a/`` with a good video, a copy with damaged frames and a PNG named ``still.mp4``;
    returns ``(good, damaged, png)`` paths."""
    (root / "a").mkdir(parents=True)
    good = str(root / "a" / "good.avi")
    write_video(good, counter_frames(t=40), codec="mpeg4", gop_size=12)
    damaged = corrupt_middle(good, root / "a" / "damaged.avi")
    png = write_png(root / "a" / "still.mp4")
    return good, damaged, png


def folder_layout(src, root):
    """A ``folder``-layout tree over the tiny set ``src``: symlinked videos, a symlinked class
    folder and a directory named like a video (with a file inside)."""
    (root / "left").mkdir(parents=True)
    for p in sorted((src / "MoveLeft").iterdir()):
        os.symlink(p, root / "left" / p.name)
    os.symlink(src / "MoveRight", root / "right")  # a symlinked class folder
    (root / "left" / "v_fake.avi").mkdir()  # a directory named like a video
    (root / "left" / "v_fake.avi" / "inner.avi").write_text("inside a folder named like a video")
    return root


def test_check_video_finds_images_and_corrupt_frames(tmp_path):
    good, damaged, png = bad_video_tree(tmp_path / "videos")
    n_corrupt = len(scan_frames(damaged).corrupt)
    assert n_corrupt >= 1
    # a probe (no full decode) already refuses the image; the damage needs a full decode
    assert check_video(png) and "an image file" in check_video(png)
    assert check_video(damaged) is None
    reason = check_video(damaged, full=True)
    assert reason.startswith(f"{n_corrupt} of ") and "frames corrupt" in reason
    assert check_video(good, full=True) is None
    # each file once, however often it is listed
    bad = prescan([damaged, png, damaged, good, png], full=True, num_threads=2, progress=False)
    assert sorted(os.path.basename(p) for p, _ in bad) == ["damaged.avi", "still.mp4"]


def test_all_videos_sees_what_the_datamodule_sees(tmp_path):
    """Directories named like videos and symlinked class folders: the folder layout lists both."""
    root = folder_layout(tiny_set(tmp_path), tmp_path / "folder_layout")
    ann = parse_folder(str(root))
    seen_by_datamodule = sorted(os.path.abspath(r.path) for r in ann.train + ann.test)
    assert sorted(os.path.abspath(p) for p in all_videos(str(root))) == seen_by_datamodule
    assert check_video(str(root / "left" / "v_fake.avi")).startswith("is a directory")
