"""p3d-flow on a folder dataset with parallel workers: a finished video is skipped, a bad one
reported as p3d-prescan reports it, the rest extracted."""
import json

import pytest

pytest.importorskip("cv2", reason="opencv-contrib-python-headless (the [flow] / [dev] extra)")

from p3d_lightning.commands.flow import main  # noqa: E402
from p3d_lightning.data.flow import FLOW_META, extract_flow  # noqa: E402
from tests.data.test_flow import flow_source_tree  # noqa: E402


def test_command_skips_finished_videos_and_reports_bad_ones(tmp_path, capsys):
    root = flow_source_tree(tmp_path / "videos")
    extract_flow([str(root / "a" / "v_1.avi")], str(root), str(tmp_path / "f"), method="farneback", num_workers=1,
                 progress=False)
    assert main([str(root), "--output", str(tmp_path / "f"), "--method", "farneback", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert f"BAD  {root / 'b' / 'v_bad.avi'}" in text and "1 extracted, 1 already complete, 1 failed" in text
    assert json.loads((tmp_path / "f" / "b" / "v_2" / FLOW_META).read_text())["method"] == "farneback"


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--resize", "1", "2", "3"])
