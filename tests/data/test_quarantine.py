"""data/quarantine.py: the skip list round-trips (relative paths under the root, absolute ones
outside it), comments and blank lines are ignored, and a missing list is named."""
import os

import pytest

from p3d_lightning.data.quarantine import read_quarantine, write_quarantine


def test_write_then_read_round_trips(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "elsewhere" / "x.avi"
    inside = root / "cls" / "v_1.avi"
    q = tmp_path / "q.txt"
    write_quarantine(str(q), [(str(inside), "no video stream"), (str(outside), "file is empty (0 bytes)")], str(root))
    lines = q.read_text().splitlines()
    assert lines[0].startswith("# p3d-prescan quarantine list")
    assert lines[1:] == [f"{os.path.join('cls', 'v_1.avi')}\tno video stream", f"{outside}\tfile is empty (0 bytes)"]
    with open(q, "a", encoding="utf-8") as f:
        f.write("\n  # a comment\nonly/a/path.avi\n")
    assert read_quarantine(str(q), str(root)) == [str(inside), str(outside), str(root / "only" / "a" / "path.avi")]
    write_quarantine(str(q), [], str(root), header="# another tool\n")
    assert q.read_text() == "# another tool\n" and read_quarantine(str(q), str(root)) == []
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_quarantine(str(tmp_path / "nope.txt"), str(root))
