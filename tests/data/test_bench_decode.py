"""The decode benchmark runs (timing itself is not tested, nor are its targets)."""
from p3d_lightning.data.bench_decode import bench_prepared, bench_threads, bench_video, cores_needed, make_benchmark_video
from p3d_lightning.data.container import probe_video
from p3d_lightning.data.encode import transcode_video


def test_bench_runs_on_tiny_video(tmp_path):
    path = str(tmp_path / "b.avi")
    make_benchmark_video(path, 32, 48, seconds=1.0, fps=25, gop_size=12, bit_rate=100_000)
    assert probe_video(path).num_frames == 25
    res = bench_video(path, num_clips=3, clip_len=8)
    for key in ("seek", "naive", "naive-lite", "seek+resize"):
        assert res[key] > 0


def test_prepared_and_thread_benchmarks_run(tmp_path):
    src, out = str(tmp_path / "k.mp4"), str(tmp_path / "k_prepared.mp4")
    make_benchmark_video(src, 32, 48, seconds=1.0, fps=25, codec="libx264", gop_size=25, bframes=2, bit_rate=100_000)
    transcode_video(src, out, 24, gop_size=4)
    r = bench_prepared(src, out, num_clips=3, clip_len=8, num_eval_clips=4, eval_repeats=1, size=(24, 36))
    assert r["eval_identical"] and r["prepared_frames"] == r["frames"] == 25 and r["prepared_size"] == "36x24"
    for key in ("raw", "prepared", "eval_seek", "eval_once", "eval_once_prepared", "psnr", "prepared_gb_h"):
        assert r[key] > 0, key
    t = bench_threads(src, num_clips=3, workers=0, clip_len=8, size=(24, 36), thread_types=("NONE", "SLICE"))
    assert set(t) == {"NONE", "SLICE"} and all(v > 0 for v in t.values())
    assert cores_needed([1500, 2700], 100.0) == "15-27" and cores_needed([100], 200.0) == "1"
