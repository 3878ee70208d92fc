"""p3d-synth writes the synthetic set and says what it wrote; an existing set is left alone."""
from p3d_lightning.commands.synth import main


def test_cli(tmp_path, capsys):
    args = [str(tmp_path / "s"), "--num-pairs", "1", "--videos-per-class", "2", "--clips-per-group", "1",
            "--size", "32", "48", "--num-frames", "4", "--workers", "1"]
    main(args)
    assert "wrote 2 train + 2 test videos of 2 classes" in capsys.readouterr().out
    main(args)
    assert "already holds a dataset (classInd.txt present)" in capsys.readouterr().out
