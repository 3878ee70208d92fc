"""p3d-two-stream reads two feature files, prints the fused table and writes it as JSON."""
import json

import pytest
import torch

from p3d_lightning.commands.two_stream import main
from tests.test_two_stream import FLOW, RGB


def test_command_reads_feature_files(tmp_path, capsys):
    torch.save(RGB, tmp_path / "rgb.pt")
    torch.save(FLOW, tmp_path / "flow.pt")
    assert main(["--rgb", str(tmp_path / "rgb.pt"), "--flow", str(tmp_path / "flow.pt"), "--weights", "1", "2",
                 "--output", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| rgb | 1 | 3 | 66.7% |" in out and "| flow | 2 | 3 | 66.7% |" in out
    assert json.loads((tmp_path / "r.json").read_text())["weights"] == [1.0, 2.0]
    with pytest.raises(SystemExit):
        main(["--rgb", str(tmp_path / "nope.pt"), "--flow", str(tmp_path / "flow.pt")])
