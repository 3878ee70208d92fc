"""p3d-prep: a broken source reported as p3d-prescan reports it, a re-run skips what is unchanged,
the disk cost per hour is printed, and bad options exit with a usage error."""
import pytest

from p3d_lightning.commands.prep import main
from p3d_lightning.data.prescan import check_video
from tests.data.test_prep import source_tree


def test_command_reports_bad_sources_and_skips_unchanged_files(tmp_path, capsys):
    src, dst = source_tree(tmp_path)
    args = [str(src), str(dst), "--short-side", "32", "--gop", "6", "--no-progress", "--workers", "1"]
    assert main(args) == 0
    assert "2 prepared, 0 unchanged and skipped, 1 bad sources" in capsys.readouterr().out
    assert main(args) == 0  # nothing changed: nothing re-encoded
    out = capsys.readouterr().out
    assert f"BAD  {src / 'ClassB' / 'broken.avi'}: {check_video(str(src / 'ClassB' / 'broken.avi'))}" in out
    assert "0 prepared, 3 unchanged" in out and "GB/h" in out


def test_bad_options_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope"), str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        main([str(tmp_path), str(tmp_path / "out"), "--gop", "0"])
