"""The p3d-bench command: its parsing helpers and every mode on --quick (writes CSV + JSON, records its settings).

No timing asserts: only that every path runs, records its settings and writes its files.
"""

import csv
import json

import pytest

import paths
from cpu_caps import requires_bf16
from p3d_lightning.commands import bench as benchmark
from p3d_lightning.speed.inference import DEFAULT_CPU_SETTINGS_NO_BF16
from p3d_lightning.speed.numerics import check_fast_path_on_data


def test_parse_helpers():
    assert benchmark._parse_shape("16x160x160") == (3, 16, 160, 160)
    assert benchmark._parse_shape("2x16x112x112") == (2, 16, 112, 112)
    assert benchmark._parse_model_spec("p3d199:4", [8]) == ("p3d199", [4])
    assert benchmark._parse_model_spec("p3d", [8]) == ("p3d", [8])
    assert benchmark._train_setting("fp32_cl_ckpt") == {
        "precision": "fp32", "channels_last": True, "checkpoint": True}
    assert benchmark._train_setting("fast")["channels_last"] is True
    with pytest.raises(SystemExit):
        benchmark._train_setting("fp8")


@requires_bf16
def test_parse_bf16_train_setting_where_bf16_runs():
    assert benchmark._train_setting("bf16-mixed_cl_ckpt") == {
        "precision": "bf16-mixed", "channels_last": True, "checkpoint": True}


def _no_bf16(monkeypatch):
    """Make this machine look like an AVX2-only CPU: the probe reports that bf16 does not run."""
    from p3d_lightning import precision

    monkeypatch.setenv("P3D_CPU_BF16", "0")
    precision.cpu_capabilities.cache_clear()
    return precision


def test_bench_without_bf16_picks_fp32_and_rejects_bf16_clearly(tmp_path, monkeypatch, capsys):
    """The AVX2 branch on any machine: fp32 ladder by default, explicit bf16 a clear exit."""
    precision = _no_bf16(monkeypatch)
    try:
        assert benchmark.main(["--quick", "--no-ceiling", "--out-dir", str(tmp_path)]) == 0
        rows, data = _read(tmp_path, "infer")
        assert [r["setting"] for r in rows] == DEFAULT_CPU_SETTINGS_NO_BF16
        assert {r["precision"] for r in rows} == {"fp32"}
        assert "no bf16" in data["meta"]["device_name"]
        with pytest.raises(SystemExit, match=r"--settings bf16_fold_cl.*does not run on this CPU.*fp32"):
            benchmark.main(["--quick", "--out-dir", str(tmp_path), "--settings", "bf16_fold_cl"])
        with pytest.raises(SystemExit, match=r"--train-settings bf16-mixed_cl.*32-true"):
            benchmark.main(["--quick", "--train", "--out-dir", str(tmp_path),
                            "--train-settings", "bf16-mixed_cl"])
        assert benchmark._train_setting("fast")["precision"] == "fp32"
    finally:
        precision.cpu_capabilities.cache_clear()


def _read(out_dir, mode):
    csvs = sorted(out_dir.glob(f"bench_{mode}_*.csv"))
    jsons = sorted(out_dir.glob(f"bench_{mode}_*.json"))
    assert len(csvs) == 1 and len(jsons) == 1
    with open(csvs[0]) as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads(jsons[0].read_text())


def test_bench_quick_inference_writes_csv_json(tmp_path, capsys):
    assert benchmark.main(["--quick", "--out-dir", str(tmp_path)]) == 0
    rows, data = _read(tmp_path, "infer")
    settings = [r["setting"] for r in rows]
    assert settings[0] == "fp32" and len(settings) >= 3
    assert all(float(r["clips_per_s"]) > 0 for r in rows)
    assert float(rows[0]["speedup_vs_fp32"]) == pytest.approx(1.0)
    meta = data["meta"]
    for key in ("device_name", "torch_threads", "torch_version", "ceiling", "load_average_start"):
        assert key in meta
    for r in data["rows"]:
        assert r["gmacs_per_clip"] > 0 and r["params"] > 0 and r["fraction_of_ceiling"] > 0
        if r["setting"] != "fp32":
            assert r["top1_agreement_vs_fp32"] >= 0.5
    assert "clips/s" in capsys.readouterr().out


def test_bench_quick_train_writes_csv_json(tmp_path):
    assert benchmark.main(["--quick", "--train", "--no-ceiling", "--out-dir", str(tmp_path),
                           "--train-settings", "fp32", "fast_ckpt"]) == 0
    rows, data = _read(tmp_path, "train")
    assert [r["setting"] for r in rows] == ["fp32", "fast_ckpt"]
    assert all(float(r["clips_per_s"]) > 0 and r["peak_mem_mb_per_clip"] != "" for r in rows)


def test_bench_quick_data_writes_csv_json(tmp_path):
    pytest.importorskip("p3d_lightning.data")
    from p3d_lightning import data

    if not hasattr(data, "VideoDataModule"):
        pytest.skip("VideoDataModule not available yet")
    assert benchmark.main(["--quick", "--data", "--out-dir", str(tmp_path),
                           "--target-clips-per-s", "20"]) == 0
    rows, data_json = _read(tmp_path, "data")
    assert rows and float(rows[0]["clips_per_s"]) > 0
    assert "workers_needed" in data_json["meta"]


def test_bench_check_trained_checkpoint(tiny_synthetic_root, tmp_path, monkeypatch):
    """--check: plain fp32 vs the fast path on the test clips of a (briefly) trained checkpoint."""
    from p3d_lightning.commands.p3d import main as p3d_main

    monkeypatch.chdir(tmp_path)
    config = str(paths.EXPERIMENTS / "synthetic" / "p3d.yaml")
    sets = {"model.arch": "p3d_tiny", "data.root": str(tiny_synthetic_root), "data.num_classes": "4",
            "data.resize": "[40, 52]", "data.crop_size": "32", "data.num_eval_clips": "2",
            "data.batch_size": "4", "data.eval_batch_size": "8", "data.num_workers": "0",
            "data.progress": "false"}
    fit_args = ["fit", "--config", config, "--trainer.max_steps", "8", "--trainer.precision", "32-true",
                "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
                "--checkpoint.dirpath", str(tmp_path / "ckpt"), "--features.output_dir", str(tmp_path / "f")]
    for k, v in sets.items():
        fit_args += [f"--{k}", v]
    p3d_main(fit_args)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    out = tmp_path / "bench"
    assert benchmark.main(["--check", str(ckpt), "--config", config, "--out-dir", str(out),
                           "--set", *[f"{k}={v}" for k, v in sets.items()]]) == 0
    rows, data = _read(out, "check")
    r = data["rows"][0]
    assert r["num_clips"] == 16  # 8 test videos x 2 clips
    assert r["arch"] == "p3d_tiny" and r["stage"] == "test"
    assert 0.75 <= r["top1_agreement"] <= 1.0
    assert r["within_bf16_tol"] is True and r["max_abs_diff"] >= 0.0
    assert 0.0 <= r["clip_acc_fp32"] <= 1.0 and 0.0 <= r["clip_acc_fast"] <= 1.0
    from p3d_lightning.models.fusion import fusion_available
    if fusion_available():  # the checked fast path is the fused one
        assert r["fused_ops"]["conv_add_relu"] == 6
    # --stage val --max-batches 1: only the first validation batch (eval batch size 8)
    out_val = tmp_path / "bench_val"
    assert benchmark.main(["--check", str(ckpt), "--config", config, "--out-dir", str(out_val),
                           "--stage", "val", "--max-batches", "1",
                           "--set", *[f"{k}={v}" for k, v in sets.items()]]) == 0
    r_val = _read(out_val, "check")[1]["rows"][0]
    assert r_val["stage"] == "val" and r_val["num_clips"] == 8
    with pytest.raises(SystemExit):
        benchmark.main(["--check", str(ckpt), "--out-dir", str(out)])  # no --config
    with pytest.raises(SystemExit):  # a --set item without '='
        benchmark.main(["--check", str(ckpt), "--config", config, "--out-dir", str(out), "--set", "data.root"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        check_fast_path_on_data(tmp_path / "missing.ckpt", config)
