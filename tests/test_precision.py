"""Tests for p3d_lightning.precision: capability by probing, one vocabulary, clear refusals.

The "no bf16" branch (AVX2-only CPUs) is forced on any machine with ``P3D_CPU_BF16=0``, so the
AVX-512 CI machine checks what an AVX2 laptop does.
"""
import pytest
import torch

from cpu_caps import requires_bf16
from p3d_lightning import precision
from p3d_lightning.models import create_model
from p3d_lightning.models.fastpath import optimize_for_inference
from p3d_lightning.precision import (PrecisionUnsupportedError, check_training_precision,
                                     cpu_capabilities, default_precision, resolve_inference_dtype,
                                     training_precision)


@pytest.fixture
def no_bf16(monkeypatch):
    """This process sees a CPU on which bf16 kernels do not run (as on an AVX2-only EPYC)."""
    monkeypatch.setenv("P3D_CPU_BF16", "0")
    cpu_capabilities.cache_clear()
    yield cpu_capabilities()
    monkeypatch.delenv("P3D_CPU_BF16")
    cpu_capabilities.cache_clear()


def test_probe_describes_this_cpu():
    caps = cpu_capabilities()
    assert caps.isa and caps.isa_label
    assert caps.bf16_native <= caps.bf16_runs  # native implies it runs
    assert caps.describe().startswith(caps.isa_label)
    assert cpu_capabilities() is caps  # probed once, cached


def test_forced_no_bf16_branch(no_bf16):
    assert not no_bf16.bf16_runs and not no_bf16.bf16_native and no_bf16.forced
    assert "no bf16" in no_bf16.describe()
    assert default_precision("cpu") == "32-true"
    assert resolve_inference_dtype("auto", "cpu") is torch.float32
    with pytest.raises(PrecisionUnsupportedError, match=r"optimize_for_inference: 'bf16' does not run on "
                                                        r"this CPU .*Use 'fp32'"):
        resolve_inference_dtype("bf16", "cpu")
    with pytest.raises(PrecisionUnsupportedError, match=r"trainer.precision='bf16-mixed'.*32-true"):
        check_training_precision("bf16-mixed", "cpu")
    assert check_training_precision(None, "cpu") == "32-true"
    assert check_training_precision("auto", "cpu") == "32-true"


def test_fast_path_without_bf16_is_fused_fp32_and_exact(no_bf16):
    torch.manual_seed(0)
    net = create_model("p3d_tiny", num_classes=4).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    fast = optimize_for_inference(net)  # auto
    assert fast.precision == "fp32" and fast.fused_ops
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(PrecisionUnsupportedError, match="does not run on this CPU"):
        optimize_for_inference(net, dtype="bf16")


@requires_bf16
def test_auto_picks_bf16_only_where_native():
    caps = cpu_capabilities()
    assert resolve_inference_dtype("auto", "cpu") is (torch.bfloat16 if caps.bf16_native else torch.float32)
    assert default_precision("cpu") == ("bf16-mixed" if caps.bf16_native else "32-true")


def test_training_precision_vocabulary():
    assert training_precision("fp32") == "32-true"
    assert training_precision("bf16") == "bf16-mixed"
    assert training_precision("16-mixed") == "16-mixed"
    assert training_precision("auto", "cpu") == default_precision("cpu")
    with pytest.raises(ValueError, match="expected auto, 32-true"):
        training_precision("int8")


def test_probe_failure_is_caught_not_raised(monkeypatch):
    """A kernel that refuses (as oneDNN does on AVX2) makes the probe say 'does not run'."""
    def refuse(*a, **k):
        raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx_ne_convert or "
                           "avx512bw, avx512vl and avx512dq")

    monkeypatch.setattr(torch.nn.functional, "conv3d", refuse)
    assert "bf16 path needs" in precision._probe_dtype(torch.bfloat16)


def test_p3d_refuses_bf16_at_parse_time_where_it_does_not_run(tmp_path):
    """`p3d fit --trainer.precision bf16-mixed` on a CPU without bf16 (forced): exit 2, one line
    naming the option, before any data, run folder or W&B run is made."""
    import os
    import subprocess
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "experiments" / "synthetic" / "p3d.yaml"
    env = dict(os.environ, P3D_CPU_BF16="0", WANDB_MODE="disabled")
    p = subprocess.run(["p3d", "fit", "--config", str(cfg), "--trainer.precision", "bf16-mixed",
                        "--data.root", str(tmp_path / "data")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "p3d: error: trainer.precision='bf16-mixed': bf16 does not run on this CPU" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "data").exists()
