"""W&B mode selection (no prompt, no network) and the offline run directory contents."""

import glob
import os

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from p3d_lightning import loggers as L


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path


def test_auto_mode_offline_without_credentials(clean_env):
    assert not L.wandb_logged_in()
    assert L.resolve_wandb_mode("auto") == "offline"


def test_auto_mode_online_with_api_key_or_netrc(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert L.resolve_wandb_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = clean_env / "home" / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert L.wandb_logged_in()
    assert L.resolve_wandb_mode("auto") == "online"
    netrc.write_text("machine example.com login a password b\n")
    assert L.resolve_wandb_mode("auto") == "offline"


def test_env_mode_is_honoured(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert L.resolve_wandb_mode("auto") == "disabled"
    assert L.resolve_wandb_mode("online") == "disabled"  # disabled always wins
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert L.resolve_wandb_mode("auto") == "offline"
    assert L.resolve_wandb_mode("online") == "online"
    with pytest.raises(ValueError, match="W&B mode"):
        L.resolve_wandb_mode("sometimes")


def test_make_loggers_csv_first_and_disabled_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = L.make_loggers(save_dir=str(tmp_path), name="run", group="abl", mode="auto")
    assert isinstance(loggers[0], CSVLogger)
    wb = loggers[1]
    assert type(wb).__name__ == "WandbLogger" and wb.mode == "disabled"
    wb.log_metrics({"val/video_acc1": 0.5}, step=0)  # a disabled run accepts everything
    import wandb

    wandb.finish()


def test_offline_run_directory_has_config_and_metrics(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wb = L.WandbLogger(project="p3d-test", name="offline", group="ablation-x", save_dir=str(tmp_path), mode="offline")
    try:
        wb.log_hyperparams({"arch": "p3d_tiny", "lr": 0.001})
        wb.log_metrics({"val/video_acc1": 0.75, "train/loss": 1.5}, step=3)

        class _Ckpt:
            best_model_path = str(tmp_path / "best.ckpt")
            last_model_path = str(tmp_path / "last.ckpt")
            best_model_score = torch.tensor(0.75)

        wb.after_save_checkpoint(_Ckpt())
        run_dir = wb.experiment.dir
        assert wb.experiment.group == "ablation-x"
    finally:
        wandb.finish()
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(runs) == 1, os.listdir(tmp_path)
    assert run_dir.startswith(runs[0])
    # config, metrics and summary are in the run's transaction log (.wandb) that `wandb sync`
    # uploads; wandb 0.31 writes files/config.yaml only for online runs
    import time

    path = glob.glob(os.path.join(runs[0], "*.wandb"))[0]
    for _ in range(100):  # a service shared with earlier tests may still be writing the log
        log = open(path, "rb").read()
        if b"checkpoint/last_model_path" in log:
            break
        time.sleep(0.1)
    assert b"arch" in log and b"p3d_tiny" in log  # config
    assert b"val/video_acc1" in log and b"train/loss" in log  # metrics
    assert b"checkpoint/last_model_path" in log and b"last.ckpt" in log  # summary


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc (Linux)")
def test_orphaned_wandb_service_of_a_killed_process_is_stopped():
    """A resume right after kill -9 finds the killed process's wandb-core still holding the run id;
    the logger stops services whose parent is gone (and leaves live ones alone)."""
    import subprocess
    import sys

    from p3d_lightning.loggers import _stop_orphaned_wandb_services

    dead = subprocess.Popen(["true"])
    dead.wait()
    code = "import time; time.sleep(60)"
    orphan = subprocess.Popen(["bash", "-c", f"exec -a /tmp/wandb-core {sys.executable} -c '{code}' --pid {dead.pid}"])
    alive = subprocess.Popen(["bash", "-c", f"exec -a /tmp/wandb-core {sys.executable} -c '{code}' --pid {os.getpid()}"])
    try:
        import time

        time.sleep(0.5)
        assert _stop_orphaned_wandb_services() >= 1
        assert orphan.wait(timeout=10) != 0
        assert alive.poll() is None
    finally:
        for p in (orphan, alive):
            p.kill()


def test_wandb_helpers_do_nothing_for_a_disabled_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = L.make_loggers(save_dir=str(tmp_path), name="run", mode="auto")
    assert L.wandb_dir(loggers) == "" and L.wandb_dir(loggers[:1]) == ""
    L.log_summary_to_wandb(loggers, {"model": "p3d", "params": 1}, prefix="ablation/")
    L.log_table_to_wandb(tmp_path / "t", project="p", group="g", mode="auto", name="g-table",
                         columns=["model"], data=[["p3d"]])
    assert not (tmp_path / "t").exists()
    L.finish_wandb()
    L.finish_wandb()  # no run: nothing to finish


def test_wandb_summary_and_table_of_an_offline_run(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wb = L.WandbLogger(project="p3d-test", name="offline", save_dir=str(tmp_path / "run"), mode="offline")
    try:
        L.log_summary_to_wandb([wb], {"model": "p3d", "video_acc1": 0.5, "skipped": None}, prefix="ablation/")
        assert L.wandb_dir([wb]).startswith(str(tmp_path / "run" / "wandb"))
    finally:
        L.finish_wandb()
    L.log_table_to_wandb(tmp_path / "table", project="p3d-test", group="g", mode="offline", name="g-table",
                         columns=["model", "video_acc1"], data=[["p3d", "0.5"]], summary={"results_csv": "r.csv"})
    [run] = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    assert len(glob.glob(str(tmp_path / "table" / "wandb" / "offline-run-*"))) == 1
    path = glob.glob(os.path.join(run, "*.wandb"))[0]
    for _ in range(100):  # a service shared with earlier tests may still be writing the log
        log = open(path, "rb").read()
        if b"ablation/video_acc1" in log:
            break
        time.sleep(0.1)
    assert b"ablation/model" in log and b"ablation/skipped" not in log
