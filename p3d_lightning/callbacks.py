"""Callbacks that measure what the paper's Table 1 reports, per run.

* :class:`ModelStatsCallback` -- parameters, fp32 size (MB) and GMACs per clip.
* :class:`InferenceSpeedCallback` -- inference clips/s (and frames/s) measured properly:
  inference mode, warm-up, a fixed batch of synthetic input (data loading excluded), the
  median over repeats, the device synchronised; the device name, precision, batch size and
  thread count are recorded next to the number.
* :class:`TrainThroughputCallback` -- training clips/s *including* data loading (validation
  time excluded), the number a user sees while training.

Each callback keeps its results in ``self.results`` (a flat dict) and sends them to every
logger the trainer has, so they land in W&B and in the CSV log.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch

__all__ = [
    "ModelStatsCallback",
    "InferenceSpeedCallback",
    "TrainThroughputCallback",
    "infer_clip_shape",
    "log_to_loggers",
]


def log_to_loggers(trainer: "pl.Trainer", metrics: Dict[str, float], step: Optional[int] = None) -> None:
    """Send numeric ``metrics`` to every logger of ``trainer`` (works outside ``self.log`` hooks)."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not numeric:
        return
    for logger in trainer.loggers:
        logger.log_metrics(numeric, step=trainer.global_step if step is None else step)


def _first_conv_in_channels(model: torch.nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.Conv2d)):
            return int(module.in_channels)
    raise ValueError("model has no convolution: cannot infer its input channels")


def _get(obj: Any, name: str) -> Any:
    """Read ``name`` from an object's attributes or, failing that, its ``hparams``."""
    if obj is None:
        return None
    if hasattr(obj, name):
        return getattr(obj, name)
    hparams = getattr(obj, "hparams", None)
    if hparams is not None and name in hparams:
        return hparams[name]
    return None


def infer_clip_shape(trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> Tuple[int, int, int, int]:
    """The (C, T, H, W) of one clip as the run's datamodule produces it."""
    net = getattr(pl_module, "model", pl_module)
    channels = _first_conv_in_channels(net)
    dm = getattr(trainer, "datamodule", None)
    clip_len = _get(dm, "clip_len")
    crop = _get(dm, "crop_size")
    if clip_len is None or crop is None:
        raise ValueError(
            "cannot infer the clip shape: the datamodule has no 'clip_len'/'crop_size'; "
            "pass clip_shape=(C, T, H, W) to the callback"
        )
    if isinstance(crop, (tuple, list)):
        height, width = int(crop[0]), int(crop[1])
    else:
        height = width = int(crop)
    return (channels, int(clip_len), height, width)


def _unwrap(pl_module: "pl.LightningModule") -> torch.nn.Module:
    """The plain ``nn.Module`` network inside a LightningModule (``.model`` by convention)."""
    net = getattr(pl_module, "model", None)
    if isinstance(net, torch.nn.Module):
        # torch.compile wraps the network; measure the original module.
        return getattr(net, "_orig_mod", net)
    return pl_module


class ModelStatsCallback(pl.Callback):
    """Log parameters, fp32 size (MB) and GMACs per clip of the trained network.

    Args:
        clip_shape: (C, T, H, W) of one clip; inferred from the datamodule when ``None``.
    """

    def __init__(self, clip_shape: Optional[Sequence[int]] = None) -> None:
        self.clip_shape = tuple(clip_shape) if clip_shape is not None else None
        self.results: Dict[str, Any] = {}

    def _measure(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.results:
            return
        from p3d_lightning.models.complexity import model_complexity

        shape = self.clip_shape or infer_clip_shape(trainer, pl_module)
        stats = model_complexity(_unwrap(pl_module), input_shape=shape)
        self.results = {
            "params": int(stats["params"]),
            "size_mb": float(stats["size_mb"]),
            "gmacs_per_clip": float(stats["gmacs"]),
            "clip_shape": "x".join(str(s) for s in shape),
        }
        log_to_loggers(trainer, {f"model/{k}": v for k, v in self.results.items()})

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._measure(trainer, pl_module)

    def on_test_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._measure(trainer, pl_module)


class InferenceSpeedCallback(pl.Callback):
    """Measure inference speed of the trained network once training (or testing) ends.

    The measurement runs on a copy of the network, on synthetic input of a fixed batch, so
    data loading is excluded; see :func:`p3d_lightning.benchmark.measure_inference_speed`.

    Args:
        batch_size: clips per forward pass.
        clip_shape: (C, T, H, W); inferred from the datamodule when ``None``.
        fast_path: measure the inference fast path (BN folded, channels_last_3d, bf16 where
            supported) instead of the plain fp32 module.
        warmup: untimed forward passes before measuring.
        repeats: timed forward passes; the median is reported.
        when: ``"fit_end"`` or ``"test_end"``.
    """

    def __init__(
        self,
        batch_size: int = 8,
        clip_shape: Optional[Sequence[int]] = None,
        fast_path: bool = True,
        warmup: int = 2,
        repeats: int = 5,
        when: str = "fit_end",
    ) -> None:
        if when not in ("fit_end", "test_end"):
            raise ValueError(f"when must be 'fit_end' or 'test_end', got {when!r}")
        if batch_size < 1 or repeats < 1 or warmup < 0:
            raise ValueError("batch_size and repeats must be >= 1 and warmup >= 0")
        self.batch_size = batch_size
        self.clip_shape = tuple(clip_shape) if clip_shape is not None else None
        self.fast_path = fast_path
        self.warmup = warmup
        self.repeats = repeats
        self.when = when
        self.results: Dict[str, Any] = {}

    def _measure(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        from p3d_lightning.benchmark import measure_inference_speed

        shape = self.clip_shape or infer_clip_shape(trainer, pl_module)
        net = copy.deepcopy(_unwrap(pl_module)).float().eval()
        setting = "fp32"
        if self.fast_path:
            from p3d_lightning.models.fastpath import optimize_for_inference

            net = optimize_for_inference(net)
            setting = "fast"
        device = pl_module.device
        speed = measure_inference_speed(
            net,
            clip_shape=shape,
            batch_size=self.batch_size,
            warmup=self.warmup,
            repeats=self.repeats,
            device=device,
            setting_name=setting,
        )
        self.results = {
            "infer_clips_per_s": float(speed["clips_per_s"]),
            "infer_frames_per_s": float(speed["frames_per_s"]),
            "infer_device": speed["device_name"],
            "infer_precision": speed["precision"],
            "infer_setting": setting,
            "infer_batch_size": int(speed["batch_size"]),
            "infer_threads": int(speed["torch_threads"]),
            "infer_clip_shape": "x".join(str(s) for s in shape),
        }
        log_to_loggers(
            trainer,
            {
                "speed/clips_per_s": speed["clips_per_s"],
                "speed/frames_per_s": speed["frames_per_s"],
            },
        )

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.when == "fit_end":
            self._measure(trainer, pl_module)

    def on_test_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.when == "test_end":
            self._measure(trainer, pl_module)


class TrainThroughputCallback(pl.Callback):
    """Training clips/s including data loading, excluding validation and the first batches.

    Args:
        warmup_batches: batches at the start of the run that are not timed (worker start-up,
            allocator warm-up).
    """

    def __init__(self, warmup_batches: int = 2) -> None:
        self.warmup_batches = warmup_batches
        self._batches = 0
        self._clips = 0
        self._elapsed = 0.0
        self._t0: Optional[float] = None
        self.results: Dict[str, Any] = {}

    def _start(self) -> None:
        if self._batches >= self.warmup_batches:
            self._t0 = time.perf_counter()

    def _stop(self) -> None:
        if self._t0 is not None:
            self._elapsed += time.perf_counter() - self._t0
            self._t0 = None

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D401
        clips = int(batch["clip"].shape[0]) if isinstance(batch, dict) else int(batch[0].shape[0])
        self._batches += 1
        if self._t0 is not None:
            self._clips += clips * trainer.world_size
        elif self._batches == self.warmup_batches:
            self._start()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Validation inside fit: resume timing the training loop.
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._stop()
        if self._elapsed > 0 and self._clips > 0:
            rate = self._clips / self._elapsed
            self.results = {"train_clips_per_s": rate, "train_timed_clips": self._clips}
            log_to_loggers(trainer, {"speed/train_clips_per_s": rate})
