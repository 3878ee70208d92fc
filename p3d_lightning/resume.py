"""Exact resume: what a run must save so that a resumed run trains exactly as if never stopped.

A training step is a function of the weights/optimiser/scheduler (Lightning saves those), of
*which* samples the batch holds and of the random numbers it draws (dropout). This module owns
the last two and the file that carries them:

- **Loader state** (:class:`ResumableLoader`): the train loader records ``(data epoch, batches
  consumed in it)`` and counts its passes itself; on resume it continues that epoch after the
  consumed batches, or starts the next one when the epoch was fully consumed (a checkpoint
  written at epoch end or at the validation that ends it). Sample order and augmentation are functions of ``(seed, epoch, index)``
  (``EpochSampler``, ``VideoClipDataset``), so skipping is all a mid-epoch resume needs.
- **RNG state** (:func:`seed_step`): before every training batch the global torch / numpy /
  Python generators are seeded from ``(run seed, global step, micro-batch, rank)``. The random
  numbers of a step then do not depend on what ran before it in the process (validation,
  loader start-up, a previous attempt), so there is no generator state to capture at the
  right moment; the checkpoint stores the run seed (:func:`rng_checkpoint_state`).
- **last.ckpt** (:class:`LastCheckpoint`): always the latest training state, written
  atomically (temporary file + rename, so a ``kill -9`` during the write leaves the previous
  one intact) at every validation end, every train-epoch end, every ``every_n_train_steps``
  optimiser steps, at the end of training, and at the next batch boundary after the SLURM
  requeue signal (``SIGUSR1``), after which the job is requeued and training stops.

Best-by-metric checkpoints stay with Lightning's ``ModelCheckpoint`` (the ``checkpoint``
config section); ``last.ckpt`` is this callback's alone.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, DistributedSampler

__all__ = [
    "ResumableSampler", "ResumableLoader", "make_resumable", "LastCheckpoint", "LAST_NAME",
    "step_seed", "seed_step", "rng_checkpoint_state", "RNG_KEY",
]

LAST_NAME = "last.ckpt"
#: Key of the resume RNG record in a checkpoint.
RNG_KEY = "p3d_resume"


# ----------------------------------------------------------------------------- RNG
def step_seed(base_seed: int, global_step: int, micro_batch: int = 0, rank: int = 0) -> int:
    """A 63-bit seed for one training batch, a pure function of its position in the run:
    the optimiser step it belongs to, its index inside a gradient-accumulation window and the rank."""
    digest = hashlib.blake2b(f"{int(base_seed)}/{int(global_step)}/{int(micro_batch)}/{int(rank)}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_step(base_seed: int, global_step: int, micro_batch: int = 0, rank: int = 0) -> int:
    """Seed torch (all devices), numpy and Python for one training batch; returns the seed."""
    seed = step_seed(base_seed, global_step, micro_batch, rank)
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)
    return seed


def run_seed() -> int:
    """The seed of this run: ``seed_everything``'s (``PL_GLOBAL_SEED``), else torch's initial seed."""
    env = os.environ.get("PL_GLOBAL_SEED")
    if env is not None and env.strip().lstrip("-").isdigit():
        return int(env)
    return int(torch.initial_seed())


def rng_checkpoint_state(base_seed: int) -> Dict[str, Any]:
    """What a checkpoint stores so that a resumed run draws the same random numbers."""
    return {"base_seed": int(base_seed), "scheme": "per-batch seed from (base_seed, global_step, micro_batch, rank)"}


# ----------------------------------------------------------------------------- loader state
class ResumableSampler(DistributedSampler):
    """Wraps a per-epoch deterministic ``DistributedSampler``; the epoch of each pass is chosen
    by :class:`ResumableLoader`, not by the caller of ``set_epoch``.

    Still a ``DistributedSampler``, so Lightning uses it as-is under DDP. ``set_epoch`` only
    records the epoch to start from when the loader has not iterated yet: after a resume
    Lightning's epoch counter can run one ahead of the data actually consumed (a checkpoint
    written at epoch end is restored as a "restarted" epoch), so the loader counts its passes
    itself and sets the wrapped sampler's (and through it the dataset's) epoch right before
    each pass.
    """

    def __init__(self, inner: DistributedSampler) -> None:  # noqa: D107 (no super().__init__: copies state)
        self.inner = inner
        self.dataset = inner.dataset
        self.num_replicas, self.rank = inner.num_replicas, inner.rank
        self.epoch, self.seed, self.shuffle, self.drop_last = inner.epoch, inner.seed, inner.shuffle, inner.drop_last
        self.num_samples, self.total_size = inner.num_samples, inner.total_size
        self.requested_epoch = inner.epoch
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.requested_epoch = int(epoch)

    def start_pass(self, epoch: int, skip: int) -> None:
        """Set the epoch (sampler and dataset) and the samples to skip of the next pass."""
        self.epoch, self.skip = int(epoch), int(skip)
        self.inner.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.inner))
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return len(self.inner)


class ResumableLoader(DataLoader):
    """A train ``DataLoader`` with ``state_dict``/``load_state_dict`` that Lightning saves in
    every checkpoint and restores on resume.

    The state is ``{"epoch", "consumed_batches", "batches_per_epoch", "batch_size"}``: the
    data epoch of the current pass and the batches yielded from it. Lightning does not
    pre-fetch from a loader with a length, so these are exactly the batches trained on when a
    checkpoint is written. The loader counts its own passes: the first pass uses the epoch
    Lightning set (0 for a new run), each later pass the next epoch; after
    ``load_state_dict`` the first pass continues the saved epoch after its consumed batches,
    or, when that epoch was fully consumed (checkpoints written at epoch end or at the
    validation ending an epoch), starts the next one. Requires a sampler whose order is a
    function of ``(seed, epoch)`` (``EpochSampler``, any ``DistributedSampler``) and
    per-sample randomness independent of the global RNG.
    """

    def __init__(self, loader: DataLoader) -> None:
        sampler = loader.sampler
        if not isinstance(sampler, DistributedSampler):
            raise TypeError(
                f"ResumableLoader needs a DistributedSampler-style train sampler with a per-epoch order, "
                f"got {type(sampler).__name__}"
            )
        kwargs: Dict[str, Any] = dict(
            batch_size=loader.batch_size, sampler=ResumableSampler(sampler), num_workers=loader.num_workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
            timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
            persistent_workers=loader.persistent_workers,
        )
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
            kwargs["multiprocessing_context"] = loader.multiprocessing_context
        super().__init__(loader.dataset, **kwargs)
        self._epoch: Optional[int] = None  # data epoch of the current pass (None: no pass yet)
        self._yielded = 0
        self._resume: Optional[tuple] = None  # (epoch, batches to skip) for the first pass after a load

    def _next_pass(self) -> tuple:
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
            return epoch, skip
        if self._epoch is None:
            return int(self.sampler.requested_epoch), 0
        return self._epoch + 1, 0

    def __iter__(self):
        epoch, skip = self._next_pass()
        self.sampler.start_pass(epoch, skip * self.batch_size)
        self._epoch, self._yielded = epoch, skip
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> Dict[str, Any]:
        epoch = self._epoch if self._epoch is not None else int(self.sampler.requested_epoch)
        return {"epoch": int(epoch), "consumed_batches": int(self._yielded),
                "batches_per_epoch": len(self), "batch_size": self.batch_size}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(
                f"cannot resume the train loader: data.batch_size changed from {state['batch_size']} "
                f"to {self.batch_size}"
            )
        per_epoch = int(state.get("batches_per_epoch", len(self)))
        if per_epoch != len(self):
            raise ValueError(
                f"cannot resume the train loader: the checkpoint's epoch had {per_epoch} batches, this loader has "
                f"{len(self)} (the training set or the number of devices changed)"
            )
        epoch, consumed = int(state["epoch"]), int(state["consumed_batches"])
        self._resume = (epoch + 1, 0) if consumed >= per_epoch else (epoch, consumed)


def make_resumable(datamodule: Any) -> Any:
    """Make ``datamodule.train_dataloader()`` return a :class:`ResumableLoader` (in place).

    A no-op when the data module's loader is already stateful or its sampler is not a
    ``DistributedSampler``. Returns the data module.
    """
    if datamodule is None or getattr(datamodule, "_p3d_resumable", False):
        return datamodule
    original = datamodule.train_dataloader

    def train_dataloader() -> Any:
        loader = original()
        if hasattr(loader, "state_dict") or not isinstance(getattr(loader, "sampler", None), DistributedSampler):
            return loader
        return ResumableLoader(loader)

    datamodule.train_dataloader = train_dataloader
    datamodule._p3d_resumable = True
    return datamodule


# ----------------------------------------------------------------------------- last.ckpt
class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt``: always the latest training state.

    Saved (atomically) at every validation end during ``fit``, at every train-epoch end,
    every ``every_n_train_steps`` optimiser steps (0: never on a step cadence), at the end of
    training, and at the first batch boundary after ``requeue_signal`` (SLURM's
    ``--signal=USR1@<seconds>``); after that save the job is requeued with
    ``scontrol requeue $SLURM_JOB_ID`` when running under SLURM, and training stops.

    Args:
        dirpath: folder of ``last.ckpt`` (the CLI sets it to ``<run folder>/checkpoints``).
        every_n_train_steps: step cadence of the save (0 disables it).
        requeue_signal: signal name that asks for save + requeue (``SIGUSR1``); ``None`` leaves
            signal handling to Lightning.
    """

    def __init__(self, dirpath: Optional[str] = None, every_n_train_steps: int = 0,
                 requeue_signal: Optional[str] = "SIGUSR1") -> None:
        if int(every_n_train_steps) < 0:
            raise ValueError(f"last_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        if requeue_signal is not None and not hasattr(signal, str(requeue_signal)):
            raise ValueError(f"last_checkpoint.requeue_signal: unknown signal {requeue_signal!r}")
        self.dirpath = dirpath
        self.every_n_train_steps = int(every_n_train_steps)
        self.requeue_signal = requeue_signal
        self.last_model_path = ""
        self._last_saved: Optional[tuple] = None
        self._signal_received = False
        self._stopping = False  # after a requeue save: no later save may overwrite it
        self._previous_handler: Any = None

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    # ------------------------------------------------------------------ saving
    def _path(self, trainer: Any) -> str:
        folder = self.dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
        return os.path.join(folder, LAST_NAME)

    def save(self, trainer: Any, tag: str) -> str:
        """Write last.ckpt now (all ranks call this; rank zero writes)."""
        path = self._path(trainer)
        tmp = f"{path}.tmp"
        if trainer.is_global_zero:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.last_model_path = path
        trainer.save_checkpoint(tmp, weights_only=False)  # full state; rank zero writes, then a barrier
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("LastCheckpoint.save")
        self._last_saved = (trainer.global_step, tag)
        return path

    def _skip(self, trainer: Any) -> bool:
        from pytorch_lightning.trainer.states import TrainerFn

        return (bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
                or self._stopping)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._skip(trainer):
            return
        stepped = self._last_saved is None or self._last_saved[0] != trainer.global_step
        if self._signal_received and stepped:
            self._on_requeue(trainer)
            return
        n = self.every_n_train_steps
        if n and stepped and trainer.global_step % n == 0:
            self.save(trainer, "step")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._skip(trainer):
            self.save(trainer, "validation_end")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._skip(trainer):
            self.save(trainer, "epoch_end")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._skip(trainer) and (self._last_saved is None or self._last_saved[0] != trainer.global_step):
            self.save(trainer, "train_end")
        self._restore_signal()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore_signal()

    # ------------------------------------------------------------------ preemption (SLURM requeue)
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Take over the requeue signal: save at the next batch boundary instead of mid-step."""
        if self.requeue_signal is None:
            return
        signum = getattr(signal, self.requeue_signal)
        try:
            self._previous_handler = signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: leave signals to Lightning
            self._previous_handler = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal_received = True

    def _restore_signal(self) -> None:
        if self._previous_handler is not None and self.requeue_signal is not None:
            try:
                signal.signal(getattr(signal, self.requeue_signal), self._previous_handler)
            except (ValueError, TypeError):
                pass
            self._previous_handler = None

    def _on_requeue(self, trainer: Any) -> None:
        path = self.save(trainer, "requeue")
        self._signal_received, self._stopping = False, True
        rank_zero_info(f"{self.requeue_signal} received: saved {path}")
        job = os.environ.get("SLURM_ARRAY_JOB_ID") and (
            f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
        ) or os.environ.get("SLURM_JOB_ID")
        if job and trainer.is_global_zero:
            result = subprocess.call(["scontrol", "requeue", job])
            if result == 0:
                rank_zero_info(f"requeued SLURM job {job}; it resumes with --ckpt_path last")
            else:
                rank_zero_warn(f"scontrol requeue {job} failed with exit code {result}; resume by hand "
                               "with --ckpt_path last")
        trainer.should_stop = True

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"dirpath": self.dirpath, "last_model_path": self.last_model_path}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if state_dict.get("dirpath") == self.dirpath:
            self.last_model_path = state_dict.get("last_model_path", "")
