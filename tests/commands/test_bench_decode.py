"""p3d-bench-decode prints its table for given files (timing itself is not tested)."""
import pytest

from p3d_lightning.commands.bench_decode import main
from p3d_lightning.data.bench_decode import make_benchmark_video


def test_command_prints_a_row_per_video_and_setting(tmp_path, capsys):
    src = str(tmp_path / "k.mp4")
    make_benchmark_video(src, 32, 48, seconds=1.0, fps=25, codec="libx264", gop_size=25, bframes=2, bit_rate=100_000)
    main(["--videos", src, "--num-clips", "2", "--clip-len", "8", "--eval-clips", "3",
          "--eval-repeats", "1", "--short-side", "24"])
    assert "| k.mp4 (48x32, 25 frames) | mpeg4 q3 GOP 8 36x24 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--videos", str(tmp_path / "missing.mp4")])
