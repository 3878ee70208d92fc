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
    last = torch.load(tmp_path / "b_ckpt" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6 and last["epoch"] == 1  # saved after step 6, i.e. mid-epoch
    model, resumed = _run(root, tmp_path / "b", tmp_path / "b_ckpt", max_steps=8, ckpt_path="last",
                          num_workers=num_workers)
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed == ref
