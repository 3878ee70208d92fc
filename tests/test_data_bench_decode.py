"""The decode benchmark runs (timing itself is not tested)."""
from p3d_lightning.data.bench_decode import bench_video, make_benchmark_video
from p3d_lightning.data.decode import probe_video


def test_bench_runs_on_tiny_video(tmp_path):
    path = str(tmp_path / "b.avi")
    make_benchmark_video(path, 32, 48, seconds=1.0, fps=25, gop_size=12, bit_rate=100_000)
    assert probe_video(path).num_frames == 25
    res = bench_video(path, num_clips=3, clip_len=8)
    for key in ("seek", "naive", "naive-lite", "seek+resize"):
        assert res[key] > 0
