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


def test_accuracy_summarises_as_best_and_loss_as_lowest(tmp_path, monkeypatch):
    """W&B keeps the last value by default; the project's runs keep the best accuracy (max) and
    the lowest loss (min), on the trainer/global_step axis like every other metric."""
    from wandb_files import read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    wb = L.WandbLogger(project="p3d-test", name="summaries", save_dir=str(tmp_path), mode="offline")
    try:
        for step, (acc, loss) in enumerate([(0.5, 2.0), (0.75, 1.0), (0.25, 1.5)]):
            wb.log_metrics({"val/video_acc1": acc, "val/clip_acc1": acc / 2, "val/loss": loss}, step=step)
        wb.log_metrics({"test/video_acc1": 0.4}, step=3)
        run_dir = os.path.dirname(wb.experiment.dir)
    finally:
        __import__("wandb").finish()
    run = read_offline_run(run_dir)
    assert run.summary["val/video_acc1"] == {"max": 0.75} and run.summary["val/clip_acc1"] == {"max": 0.375}
    assert run.summary["val/loss"] == {"min": 1.0} and run.summary["test/video_acc1"] == {"max": 0.4}
    for name, how in L.METRIC_SUMMARIES.items():
        metric = run.metrics[name]
        assert getattr(metric.summary, how) and metric.step_metric == "trainer/global_step", name
    assert [h["val/video_acc1"] for h in run.history if "val/video_acc1" in h] == [0.5, 0.75, 0.25]


def test_p3d_fit_and_test_runs_have_job_type_tags_config_and_honour_wandb_dir(tiny_synthetic_root, tmp_path,
                                                                               monkeypatch):
    """`p3d fit` and `p3d test` offline: each W&B run has its job_type, the arch and dataset as tags,
    the whole resolved config (trainer included) under `cli`, the best-value summaries, and its
    files in $WANDB_DIR/wandb (set by the test fixture) instead of the run folder."""
    from p3d_lightning.commands.p3d import main
    from tests.test_resume import _tiny
    from wandb_files import offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    args = [*_tiny(tiny_synthetic_root), "--run.root", str(tmp_path / "runs"), "--trainer.max_steps", "4"]
    import wandb

    main(["fit", *args])
    wandb.finish()  # the command's process would end here, finishing its run
    main(["test", *args, "--ckpt_path", "last"])
    wandb.finish()
    wandb_home = os.environ["WANDB_DIR"]
    runs = {r.job_type: r for r in offline_runs(wandb_home)}
    assert set(runs) == {"train", "test"}, [r.path for r in runs.values()]
    assert not glob.glob(str(tmp_path / "runs" / "**" / "offline-run-*"), recursive=True)
    for job, run in runs.items():
        assert {"p3d_tiny", "synthetic"} <= set(run.tags), (job, run.tags)
        assert run.config["cli"]["trainer"]["max_steps"] == 4 and run.config["cli"]["model"]["arch"] == "p3d_tiny"
    assert "max" in runs["train"].summary["val/video_acc1"]
    assert "max" in runs["test"].summary["test/video_acc1"]
    assert runs["test"].name.endswith("-test") and runs["test"].group == runs["train"].group
