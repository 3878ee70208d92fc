"""p3d-prescan lists unreadable videos once each; the datamodule skips the quarantined ones."""
import os
import warnings

import pytest

from p3d_lightning.commands.prescan import main
from p3d_lightning.data.annotations import parse_folder
from p3d_lightning.data.container import DecodeError, scan_frames
from p3d_lightning.data.datamodule import VideoDataModule
from p3d_lightning.data.prescan import check_video
from p3d_lightning.data.quarantine import QUARANTINE_FILENAME
from tests.data.test_prescan import bad_video_tree, folder_layout, tiny_set


def test_prescan_writes_quarantine_honoured_by_datamodule(tmp_path, capsys):
    root = tiny_set(tmp_path)
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


def test_prescan_then_train_strict(tmp_path, capsys):
    """The documented workflow: prescan writes the list, a strict datamodule then skips what it lists."""
    root = tiny_set(tmp_path)
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
    root = tmp_path / "videos"
    _, damaged, _ = bad_video_tree(root)
    n_corrupt = len(scan_frames(damaged).corrupt)
    out = tmp_path / "q.txt"
    assert main([str(root), "--full", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("damaged.avi") == 1 and printed.count("still.mp4") == 1 and "good.avi" not in printed
    assert f"2 unreadable (1 with corrupt frames, {n_corrupt} corrupt frames in all)" in printed
    listed = sorted(ln.split("\t")[0] for ln in out.read_text().splitlines() if not ln.startswith("#"))
    assert listed == ["a/damaged.avi", "a/still.mp4"]


def test_prescan_without_dataset_sees_what_the_datamodule_sees(tmp_path, capsys):
    """Directories named like videos and symlinked class folders: the folder layout lists both."""
    root = folder_layout(tiny_set(tmp_path), tmp_path / "folder_layout")
    ann = parse_folder(str(root))
    seen_by_datamodule = {os.path.abspath(r.path) for r in ann.train + ann.test}
    assert main([str(root), "--output", str(tmp_path / "q.txt")]) == 0
    printed = capsys.readouterr().out
    assert f"scanned {len(seen_by_datamodule)} videos, 1 unreadable" in printed
    assert "v_fake.avi: is a directory" in printed
