"""Kill a run mid-epoch, resume from last.ckpt: identical weights and test metrics."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from p3d_lightning.resume import make_resumable
from p3d_lightning.module import P3DClassifier
from training_utils import quiet_warnings, tiny_datamodule, tiny_trainer

quiet_warnings()


class _Kill(pl.Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated kill")


def _run(root, tmp, ckpt_dir, max_steps, kill_at=None, ckpt_path=None, num_workers=0):
    pl.seed_everything(0)
    dm = make_resumable(tiny_datamodule(root, batch_size=2, num_eval_clips=2, num_workers=num_workers))
    model = P3DClassifier("p3d_tiny", num_classes=4, dropout=0.5, lr=0.01, lr_step_size=3, lr_gamma=0.5)
    ckpt = ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0, every_n_train_steps=1)
    callbacks = [ckpt] + ([_Kill(kill_at)] if kill_at is not None else [])
    trainer = tiny_trainer(tmp, max_steps=max_steps, limit_val_batches=0, enable_checkpointing=True,
                           callbacks=callbacks)
    if kill_at is not None:
        with pytest.raises(RuntimeError, match="simulated kill"):
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return None, None
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    return model, metrics


@pytest.mark.parametrize("num_workers", [0, 1])  # 1: a persistent worker (the default) across epochs
def test_kill_mid_epoch_and_resume_from_last_is_exact(tiny_synthetic_root, tmp_path, num_workers):
    root = str(tiny_synthetic_root)
    # 8 train videos, batch 2 -> 4 steps per epoch; kill in the middle of epoch 2 (step 6)
    ref_model, ref = _run(root, tmp_path / "a", tmp_path / "a_ckpt", max_steps=8, num_workers=num_workers)
    _run(root, tmp_path / "b", tmp_path / "b_ckpt", max_steps=8, kill_at=6, num_workers=num_workers)
    last = torch.load(tmp_path / "b_ckpt" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 1  # saved after step 6, i.e. mid-epoch
    model, resumed = _run(root, tmp_path / "b", tmp_path / "b_ckpt", max_steps=8, ckpt_path="last",
                          num_workers=num_workers)
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed == ref


# ----------------------------------------------------------------------------- the user's path
import csv  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _tiny(root):
    """The shipped synthetic config, shrunk on the command line only."""
    return [
        "--config", str(REPO / "experiments" / "synthetic" / "p3d.yaml"),
        "--model.arch", "p3d_tiny", "--data.root", str(root), "--data.num_classes", "4",
        "--data.resize", "[40, 52]", "--data.crop_size", "32", "--data.num_eval_clips", "2",
        "--data.batch_size", "2", "--data.eval_batch_size", "8", "--data.num_workers", "0",
        "--data.progress", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.precision", "32-true",
        # 8 train videos / batch 2 = 4 steps per epoch; 3 epochs, validation after each
        "--trainer.max_steps", "12", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.log_every_n_steps", "1", "--last_checkpoint.every_n_train_steps", "3",
        # a monitored value that never improves after the first validation: best stays at step 4
        "--checkpoint.monitor", "val/num_videos",
    ]


def _env(tmp, wandb="disabled"):
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]), WANDB_MODE=wandb,
               WANDB_DIR=str(tmp / "wandb_home"), WANDB_SILENT="true", WANDB_DISABLE_GIT="true",
               WANDB_CONFIG_DIR=str(tmp / "wandb_config"), WANDB_CACHE_DIR=str(tmp / "wandb_cache"))
    env.pop("WANDB_API_KEY", None)
    if wandb != "disabled":
        env.pop("WANDB_DIR")  # W&B files in the run folder, as without WANDB_DIR (which would take them)
    return env


def _kill_at(hook, **at):
    return "--trainer.callbacks+=" + json.dumps(
        {"class_path": "resume_killer.KillAt", "init_args": {"hook": hook, **at}})


def _p3d(args, tmp, wandb="disabled", wait=True):
    proc = subprocess.Popen(["p3d", *args], cwd=str(tmp), env=_env(tmp, wandb),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    proc.output = out
    return proc


def _run_dir(root):
    return Path(root) / "synthetic_p3d" / "version_0"


def _ckpt(root, name="last.ckpt"):
    return torch.load(_run_dir(root) / "checkpoints" / name, weights_only=True, map_location="cpu")


def _val_metrics(root):
    """Every validation's metrics, in order, across all fit attempts of the run."""
    rows = []
    for path in sorted(glob.glob(str(_run_dir(root) / "logs" / "fit*" / "metrics.csv")),
                       key=lambda p: (len(p), p)):
        with open(path) as f:
            rows += [{k: v for k, v in r.items() if k.startswith("val/") and v}
                     for r in csv.DictReader(f) if r.get("val/loss")]
    return rows


def test_kill9_at_epoch_end_validation_end_and_mid_epoch_then_resume_is_exact(tiny_synthetic_root, tmp_path):
    args = _tiny(tiny_synthetic_root)
    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    ref = _p3d(["fit", *args, "--run.root", str(ref_root)], tmp_path, wait=False)  # in parallel

    # 1. kill -9 at the start of epoch 1: last.ckpt is epoch 0's end-of-epoch checkpoint
    p = _p3d(["fit", *args, "--run.root", str(root), _kill_at("train_epoch_start", epoch=1)], tmp_path, "offline")
    assert p.returncode == -signal.SIGKILL, p.output[-3000:]
    c = _ckpt(root)
    assert c["global_step"] == 4
    assert c["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["consumed_batches"] == 4
    # 2. resume, kill -9 in epoch 1's end hook: after the end-of-validation save, before the epoch-end save
    p = _p3d(["fit", *args, "--run.root", str(root), "--ckpt_path", "last", _kill_at("train_epoch_end", epoch=1)],
             tmp_path, "offline")
    assert p.returncode == -signal.SIGKILL, p.output[-3000:]
    assert _ckpt(root)["global_step"] == 8
    # 3. resume with a loader worker, kill -9 mid-epoch at step 11: last.ckpt is the step-9 one
    p = _p3d(["fit", *args, "--run.root", str(root), "--ckpt_path", "last", "--data.num_workers", "1",
              _kill_at("train_batch_start", step=11)], tmp_path, "offline")
    assert p.returncode == -signal.SIGKILL, p.output[-3000:]
    c = _ckpt(root)
    assert c["global_step"] == 9
    assert c["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["consumed_batches"] == 1
    # 4. resume to the end
    p = _p3d(["fit", *args, "--run.root", str(root), "--ckpt_path", "last"], tmp_path, "offline")
    assert p.returncode == 0, p.output[-3000:]
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]

    a, b = _ckpt(ref_root), _ckpt(root)
    assert a["global_step"] == b["global_step"] == 12  # last.ckpt is the final step ...
    assert sorted(os.listdir(_run_dir(ref_root) / "checkpoints")) == ["best-step4.ckpt", "last.ckpt"]  # ... best is not
    diffs = {k: (a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"]}
    assert max(diffs.values()) == 0.0, {k: v for k, v in diffs.items() if v}
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ref_val, val = _val_metrics(ref_root), _val_metrics(root)
    assert len(ref_val) == 3 and val == ref_val  # every validation of the run, bit for bit

    # one W&B run for the fit and its three resumes: the same id in every offline run folder
    runs = glob.glob(str(_run_dir(root) / "wandb" / "offline-run-*"))
    assert len(runs) == 4, runs
    wandb_id = json.loads((_run_dir(root) / "run.json").read_text())["wandb_id"]
    assert all(r.endswith("-" + wandb_id) for r in runs), (runs, wandb_id)
    # nothing was written into the working directory
    assert sorted(os.listdir(tmp_path)) == sorted(["ref", "killed", "wandb_home", "wandb_config", "wandb_cache"]) or \
        not {"logs", "checkpoints", "features", "lightning_logs"} & set(os.listdir(tmp_path))

    # p3d test --ckpt_path best in a new process: the best checkpoint of the newest run
    p = _p3d(["test", *args, "--run.root", str(ref_root), "--ckpt_path", "best"], tmp_path)
    assert p.returncode == 0, p.output[-3000:]
    info = json.loads((_run_dir(ref_root) / "run.json").read_text())
    assert info["commands"][-1]["command"] == "test"
    assert info["commands"][-1]["ckpt_path"].endswith("best-step4.ckpt")
    with open(_run_dir(ref_root) / "logs" / "test" / "metrics.csv") as f:
        assert "test/video_acc1" in f.readline()


def test_unreadable_checkpoint_names_the_file(tiny_synthetic_root, tmp_path, capsys):
    from p3d_lightning.commands.p3d import main

    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SystemExit) as err:
        main(["test", *_tiny(tiny_synthetic_root), "--run.root", str(tmp_path / "runs"), "--ckpt_path", str(bad)])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert str(bad) in msg and "weights_only=False" not in msg
    with pytest.raises(SystemExit):
        main(["test", *_tiny(tiny_synthetic_root), "--run.root", str(tmp_path / "none"), "--ckpt_path", "best"])
    assert "no best-by-metric checkpoint" in capsys.readouterr().err


def test_loader_state_after_a_full_epoch_starts_the_next_epoch(tiny_synthetic_root):
    from p3d_lightning.resume import ResumableLoader

    dm = tiny_datamodule(str(tiny_synthetic_root), batch_size=2)
    dm.setup("fit")
    loader = ResumableLoader(dm.train_dataloader())
    epoch0 = [b["video_idx"].tolist() for b in loader]
    epoch1 = [b["video_idx"].tolist() for b in loader]  # the loader counts its passes
    assert loader.state_dict() == {"epoch": 1, "consumed_batches": 4, "batches_per_epoch": 4, "batch_size": 2}
    fresh = ResumableLoader(dm.train_dataloader())
    fresh.load_state_dict({"epoch": 0, "consumed_batches": 4, "batches_per_epoch": 4, "batch_size": 2})
    assert [b["video_idx"].tolist() for b in fresh] == epoch1  # end-of-epoch state: the next epoch, whole
    fresh.load_state_dict({"epoch": 1, "consumed_batches": 3, "batches_per_epoch": 4, "batch_size": 2})
    assert [b["video_idx"].tolist() for b in fresh] == epoch1[3:]  # mid-epoch: the rest of that epoch
    assert epoch0 != epoch1
