"""p3d-prescan lists unreadable videos; the datamodule skips the quarantined ones."""
import warnings

from p3d_lightning.data.datamodule import VideoDataModule
from p3d_lightning.data.prescan import QUARANTINE_FILENAME, check_video, main
from p3d_lightning.data.synthetic import generate_synthetic_dataset


def test_prescan_writes_quarantine_honoured_by_datamodule(tmp_path, capsys):
    root = tmp_path / "synthetic"
    generate_synthetic_dataset(str(root), num_pairs=1, videos_per_class=4, clips_per_group=2, size=(32, 48),
                               num_frames=8, num_workers=1, progress=False)
    bad = root / "MoveLeft" / "v_MoveLeft_g02_c01.avi"
    bad.write_bytes(b"\x00" * 100)
    assert check_video(str(bad)) is not None and check_video(str(root / "MoveRight" / "v_MoveRight_g01_c01.avi")) is None
    assert main([str(root), "--dataset", "synthetic", "--full"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in out
    lines = [ln for ln in (root / QUARANTINE_FILENAME).read_text().splitlines() if not ln.startswith("#")]
    assert lines and lines[0].startswith("MoveLeft/v_MoveLeft_g02_c01.avi\t")
    dm = VideoDataModule(dataset="synthetic", root=str(root), num_classes=2, clip_len=4, resize=(32, 48),
                         crop_size=32, num_workers=0, progress=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        dm.setup()  # picks up <root>/p3d_quarantine.txt by itself
    assert dm.skipped == [(str(bad), "quarantined")]
    assert any("quarantined" in str(w.message) for w in rec)
    # scanning every file under root (no annotations) finds it too
    assert main([str(root), "--output", str(tmp_path / "q.txt")]) == 0
    assert "v_MoveLeft_g02_c01.avi" in (tmp_path / "q.txt").read_text()


def _tiny_set(tmp_path):
    root = tmp_path / "synthetic"
    generate_synthetic_dataset(str(root), num_pairs=1, videos_per_class=4, clips_per_group=2, size=(32, 48),
                               num_frames=8, num_workers=1, progress=False)
    return root


def test_prescan_then_train_strict(tmp_path, capsys):
    """The documented workflow: prescan writes the list, a strict datamodule then skips what it lists."""
    import pytest

    from p3d_lightning.data.decode import DecodeError

    root = _tiny_set(tmp_path)
    bad = root / "MoveRight" / "v_MoveRight_g01_c02.avi"
    bad.write_text("not a video")

    def strict_dm():
        dm = VideoDataModule(dataset="synthetic", root=str(root), num_classes=2, clip_len=4, resize=(32, 48),
                             crop_size=32, num_workers=0, progress=False, strict=True)
        dm.prepare_data()
        return dm

    with pytest.raises(DecodeError, match="v_MoveRight_g01_c02.avi"):
        strict_dm().setup()  # strict without a quarantine list stops at the bad file
    assert main([str(root), "--dataset", "synthetic"]) == 0
    dm = strict_dm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup()
    assert dm.skipped == [(str(bad), "quarantined")]
    assert dm.train_dataset[0]["clip"].shape[1] == 4


def test_prescan_full_reports_images_and_corrupt_frames_once(tmp_path, capsys):
    from test_data_decode import _frames, corrupt_middle, write_png

    from p3d_lightning.data.decode import scan_frames, write_video

    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    good = str(root / "a" / "good.avi")
    write_video(good, _frames(t=40), codec="mpeg4", gop_size=12)
    damaged = corrupt_middle(good, root / "a" / "damaged.avi")
    n_corrupt = len(scan_frames(damaged).corrupt)
    assert n_corrupt >= 1
    png = write_png(root / "a" / "still.mp4")
    # a probe (no --full) already refuses the image; the damage needs a full decode
    assert check_video(png) and "an image file" in check_video(png)
    assert check_video(damaged) is None
    reason = check_video(damaged, full=True)
    assert reason.startswith(f"{n_corrupt} of ") and "frames corrupt" in reason
    assert check_video(good, full=True) is None

    out = tmp_path / "q.txt"
    assert main([str(root), "--full", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("damaged.avi") == 1 and printed.count("still.mp4") == 1 and "good.avi" not in printed
    assert f"2 unreadable (1 with corrupt frames, {n_corrupt} corrupt frames in all)" in printed
    listed = sorted(ln.split("\t")[0] for ln in out.read_text().splitlines() if not ln.startswith("#"))
    assert listed == ["a/damaged.avi", "a/still.mp4"]


def test_prescan_without_dataset_sees_what_the_datamodule_sees(tmp_path, capsys):
    """Directories named like videos and symlinked class folders: the folder layout lists both."""
    import os

    from p3d_lightning.data.annotations import parse_folder
    from p3d_lightning.data.prescan import _all_videos

    src = _tiny_set(tmp_path)
    root = tmp_path / "folder_layout"
    (root / "left").mkdir(parents=True)
    for p in sorted((src / "MoveLeft").iterdir()):
        os.symlink(p, root / "left" / p.name)
    os.symlink(src / "MoveRight", root / "right")  # a symlinked class folder
    (root / "left" / "v_fake.avi").mkdir()  # a directory named like a video
    (root / "left" / "v_fake.avi" / "inner.avi").write_text("inside a folder named like a video")

    ann = parse_folder(str(root))
    seen_by_datamodule = sorted(os.path.abspath(r.path) for r in ann.train + ann.test)
    assert sorted(os.path.abspath(p) for p in _all_videos(str(root))) == seen_by_datamodule
    assert main([str(root), "--output", str(tmp_path / "q.txt")]) == 0
    printed = capsys.readouterr().out
    assert f"scanned {len(seen_by_datamodule)} videos, 1 unreadable" in printed
    assert "v_fake.avi: is a directory" in printed
