"""Callbacks that measure what the paper's Table 1 reports, per run.

* :class:`ModelStatsCallback` -- parameters, fp32 size (MB) and GMACs per clip.
* :class:`InferenceSpeedCallback` -- inference clips/s (and frames/s) measured properly:
  inference mode, warm-up, a fixed batch of synthetic input (data loading excluded), the
  median over repeats, the device synchronised; the device name, precision, batch size and
  thread count are recorded next to the number.
* :class:`TrainThroughputCallback` -- training clips/s *including* data loading (validation
  time excluded), the number a user sees while training.

Each callback keeps its results in ``self.results`` (a flat dict) and sends the numbers to
every logger the trainer has, so they land in W&B and in the CSV log; the first two also keep
the typed result (``self.stats`` / ``self.speed``).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch

from p3d_lightning.speed.config import ModelStats, SpeedConfig, SpeedResult
from p3d_lightning.speed.inference import inference_model, measure_inference_speed

__all__ = [
    "ModelStatsCallback",
    "InferenceSpeedCallback",
    "TrainThroughputCallback",
    "infer_clip_shape",
    "log_to_loggers",
]


def log_to_loggers(trainer: "pl.Trainer", metrics: Dict[str, Any], step: Optional[int] = None) -> None:
    """Send the numeric ``metrics`` to every logger of ``trainer`` (works outside ``self.log`` hooks)."""
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
        self.stats: Optional[ModelStats] = None
        self.results: Dict[str, Any] = {}

    def _measure(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.stats is not None:
            return
        shape = self.clip_shape or infer_clip_shape(trainer, pl_module)
        self.stats = ModelStats.of(_unwrap(pl_module), shape)
        self.results = self.stats.as_dict()
        log_to_loggers(trainer, {f"model/{k}": v for k, v in self.results.items()})

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._measure(trainer, pl_module)

    def on_test_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._measure(trainer, pl_module)


class InferenceSpeedCallback(pl.Callback):
    """Measure inference speed of the trained network once training (or testing) ends.

    The measurement runs on a copy of the network, on synthetic input of a fixed batch, so
    data loading is excluded; see :func:`p3d_lightning.speed.inference.measure_inference_speed`.
    The settings are a :class:`~p3d_lightning.speed.config.SpeedConfig` (its defaults unless
    given): pass ``config`` (as the ablation does) or the individual arguments.

    Args:
        batch_size: clips per forward pass.
        clip_shape: (C, T, H, W); inferred from the datamodule when ``None``.
        fast_path: measure the inference fast path (BN folded, channels_last_3d, bf16 where
            supported) instead of the plain fp32 module.
        warmup: untimed forward passes before measuring.
        repeats: timed forward passes; the median is reported.
        when: ``"fit_end"`` or ``"test_end"``.
        config: all of batch_size, fast_path, warmup and repeats at once.
    """

    def __init__(
        self,
        batch_size: int = SpeedConfig.batch_size,
        clip_shape: Optional[Sequence[int]] = None,
        fast_path: bool = SpeedConfig.fast_path,
        warmup: int = SpeedConfig.warmup,
        repeats: int = SpeedConfig.repeats,
        when: str = "fit_end",
        config: Optional[SpeedConfig] = None,
    ) -> None:
        if when not in ("fit_end", "test_end"):
            raise ValueError(f"when must be 'fit_end' or 'test_end', got {when!r}")
        self.config = config or SpeedConfig(batch_size=batch_size, fast_path=fast_path, warmup=warmup,
                                             repeats=repeats)
        self.clip_shape = tuple(clip_shape) if clip_shape is not None else None
        self.when = when
        self.speed: Optional[SpeedResult] = None
        self.results: Dict[str, Any] = {}

    def _measure(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        cfg = self.config
        shape = self.clip_shape or infer_clip_shape(trainer, pl_module)
        device = pl_module.device
        self.speed = speed = measure_inference_speed(
            inference_model(_unwrap(pl_module), cfg.setting, device), clip_shape=shape,
            batch_size=cfg.batch_size, warmup=cfg.warmup, repeats=cfg.repeats, device=device,
            setting_name=cfg.setting)
        self.results = speed.columns("infer")
        log_to_loggers(trainer, {"speed/clips_per_s": speed.clips_per_s, "speed/frames_per_s": speed.frames_per_s})

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
