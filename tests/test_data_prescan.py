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
