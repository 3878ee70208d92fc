"""A test-only callback that ``kill -9``s its own process at a chosen point of training.

Used through the command line of the real commands, e.g.
``p3d fit ... --trainer.callbacks+=resume_killer.KillAt --trainer.callbacks.hook=train_epoch_end``
with ``tests/`` on ``PYTHONPATH``. Checkpoint callbacks run after ordinary callbacks in every
hook, so ``train_epoch_end`` kills after the validation-end save and before the epoch-end save.
"""

import os
import signal
from typing import Optional

import pytorch_lightning as pl


class KillAt(pl.Callback):
    """SIGKILL this process at ``hook`` when ``global_step == step`` / ``current_epoch == epoch``.

    Args:
        hook: ``train_batch_start``, ``train_epoch_start`` or ``train_epoch_end``.
        step: global step (``train_batch_start``).
        epoch: epoch (``train_epoch_start`` / ``train_epoch_end``).
        marker: kill only if this file does not exist yet (it is created first): kills once.
        arch: kill only while training this ``model.arch`` (ablations).
    """

    def __init__(self, hook: str = "train_batch_start", step: Optional[int] = None, epoch: Optional[int] = None,
                 marker: Optional[str] = None, arch: Optional[str] = None) -> None:
        self.hook, self.step, self.epoch, self.marker, self.arch = hook, step, epoch, marker, arch

    def _kill(self, pl_module) -> None:
        if self.arch is not None and pl_module.hparams.get("arch") != self.arch:
            return
        if self.marker:
            if os.path.exists(self.marker):
                return
            open(self.marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.hook == "train_batch_start" and trainer.global_step == self.step:
            self._kill(pl_module)

    def on_train_epoch_start(self, trainer, pl_module):
        if self.hook == "train_epoch_start" and trainer.current_epoch == self.epoch:
            self._kill(pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.hook == "train_epoch_end" and trainer.current_epoch == self.epoch:
            self._kill(pl_module)
