"""Typed settings and results of the speed tools.

- :class:`SpeedConfig`: how the ablation measures speed (the ``speed:`` section of an ablation
  YAML), parsed once and handed as it is to the
  :class:`~p3d_lightning.speed.callbacks.InferenceSpeedCallback` (the trained network) and to
  :func:`~p3d_lightning.speed.inference.paper_scale_speed` (the full-size network).
- :class:`SpeedResult`: one timed setting (inference or training); the statistics are computed
  from the raw batch times, so merged rounds cannot disagree with their own median.
- :class:`ModelStats`: parameters, fp32 size and GMACs per clip (``models/complexity.py``).

Shapes stay tuples here; only the writers of CSV files turn them into text.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["ModelStats", "SpeedConfig", "SpeedResult"]


@dataclass(frozen=True)
class SpeedConfig:
    """How speed is measured for the ablation's columns (YAML: ``speed: {batch_size: 8, ...}``).

    Attributes:
        batch_size: clips per forward pass for the trained network.
        fast_path: time :func:`~p3d_lightning.models.fastpath.optimize_for_inference`'s copy
            (setting ``"fast"``) instead of the plain fp32 module (``"fp32"``); also decides
            whether the fast path is compared with fp32 on the test clips.
        warmup: untimed forward passes before timing the trained network.
        repeats: timed passes (the median is reported), for both networks.
        paper_scale: also time the full-size architecture at the paper's input.
        paper_batch_size: its batch (default: 8 clips, or 32 frames for a frame-level model).
        paper_warmup: its untimed passes.
        paper_max_seconds: its time budget (a full-size P3D in fp32 on an AVX2 laptop is ~4
            clips/s: a fixed number of repeats would take minutes; seconds give the same median
            within noise).
        agreement_batches: test batches on which the fast path is compared with fp32
            (``None``, written ``all`` in YAML: every test batch).
    """

    batch_size: int = 8
    fast_path: bool = True
    warmup: int = 2
    repeats: int = 5
    paper_scale: bool = True
    paper_batch_size: Optional[int] = None
    paper_warmup: int = 1
    paper_max_seconds: float = 6.0
    agreement_batches: Optional[int] = 8

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.repeats < 1 or self.warmup < 0 or self.paper_warmup < 0:
            raise ValueError("speed: batch_size and repeats must be >= 1 and warmup, paper_warmup >= 0; "
                             f"got batch_size={self.batch_size}, repeats={self.repeats}, "
                             f"warmup={self.warmup}, paper_warmup={self.paper_warmup}")

    @property
    def setting(self) -> str:
        """The inference setting timed: ``"fast"`` or ``"fp32"``."""
        return "fast" if self.fast_path else "fp32"

    def paper_batch(self, clip_len: int) -> int:
        """Batch of the paper-scale measurement for a model with ``clip_len`` frames per clip."""
        if self.paper_batch_size is not None:
            return self.paper_batch_size
        return 8 if clip_len > 1 else 32

    @classmethod
    def from_mapping(cls, raw: Optional[Mapping[str, Any]], source: Optional[os.PathLike] = None) -> "SpeedConfig":
        """Parse a ``speed:`` section; an unknown key or a bad value raises ``ValueError``
        naming the key and ``source`` (the YAML file)."""
        where = f"{source}: " if source is not None else ""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}speed: expected a mapping, got {raw!r}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(types))
        if unknown:
            raise ValueError(f"{where}speed: unknown key(s) {unknown}; expected {sorted(types)}")
        values = {}
        for key, value in raw.items():
            try:
                values[key] = _coerce(key, value, types[key])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}speed.{key}: {err}") from None
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None


def _coerce(key: str, value: Any, kind: str) -> Any:
    """A YAML value as the field's type (``kind`` is the annotation's text)."""
    if value is None or (key == "agreement_batches" and value == "all"):
        if "Optional" not in kind:
            raise ValueError("must be set")
        return None
    if "bool" in kind:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(value, bool):  # YAML true/false where a number is meant
        raise ValueError(f"expected a number, got {value!r}")
    return float(value) if "float" in kind else int(value)


@dataclass(frozen=True)
class SpeedResult:
    """One timed setting of one network; statistics come from ``batch_times_s``.

    ``loss_first``/``loss_last`` are set for a training measurement (forward + backward + step)
    and ``None`` for inference; :meth:`as_dict` gives the keys of the matching kind.
    """

    setting: str
    batch_times_s: Tuple[float, ...]
    batch_size: int
    clip_shape: Tuple[int, ...]
    device: str
    device_name: str
    precision: str
    channels_last: bool
    warmup: int
    repeats: int
    peak_mem_mb: Optional[float] = None
    minor_faults_per_batch: Optional[float] = None
    folded_bn: int = 0
    fused_ops: int = 0
    loss_first: Optional[float] = None
    loss_last: Optional[float] = None
    torch_threads: int = field(default_factory=torch.get_num_threads)
    torch_version: str = torch.__version__

    @property
    def training(self) -> bool:
        """True for a training measurement."""
        return self.loss_first is not None

    @property
    def frames_per_clip(self) -> int:
        """T of a (C, T, H, W) clip; 1 for a (C, H, W) image."""
        return self.clip_shape[1] if len(self.clip_shape) == 4 else 1

    @property
    def clips_per_s(self) -> float:
        """Batch size over the median batch time."""
        return self.batch_size / statistics.median(self.batch_times_s)

    @property
    def frames_per_s(self) -> float:
        """Clips/s times frames per clip."""
        return self.clips_per_s * self.frames_per_clip

    @property
    def peak_mem_mb_per_clip(self) -> Optional[float]:
        """Peak memory over the batch size (training rows report it)."""
        return None if self.peak_mem_mb is None else self.peak_mem_mb / self.batch_size

    def stats(self) -> Dict[str, float]:
        """``clips_per_s``, ``frames_per_s`` and ``batch_time_ms_{median,mean,min,max,std}``."""
        t = self.batch_times_s
        return {
            "clips_per_s": self.clips_per_s,
            "frames_per_s": self.frames_per_s,
            "batch_time_ms_median": 1e3 * statistics.median(t),
            "batch_time_ms_mean": 1e3 * statistics.fmean(t),
            "batch_time_ms_min": 1e3 * min(t),
            "batch_time_ms_max": 1e3 * max(t),
            "batch_time_ms_std": 1e3 * (statistics.stdev(t) if len(t) > 1 else 0.0),
        }

    def merged(self, others: Sequence["SpeedResult"]) -> "SpeedResult":
        """This result with the batch times of ``others`` (later rounds) appended; the settings,
        memory and first loss are this round's, the last loss the last round's."""
        times = self.batch_times_s + tuple(t for o in others for t in o.batch_times_s)
        last = others[-1].loss_last if others else self.loss_last
        return dataclasses.replace(self, batch_times_s=times, loss_last=last)

    def columns(self, prefix: str) -> Dict[str, Any]:
        """This result as the ablation's ``<prefix>_*`` columns (``infer``: the trained network,
        ``paper_scale``: the full-size one); the clip shape stays a tuple."""
        return {f"{prefix}_clips_per_s": self.clips_per_s, f"{prefix}_frames_per_s": self.frames_per_s,
                f"{prefix}_device": self.device_name, f"{prefix}_precision": self.precision,
                f"{prefix}_setting": self.setting, f"{prefix}_batch_size": self.batch_size,
                f"{prefix}_threads": self.torch_threads, f"{prefix}_shape": self.clip_shape}

    def as_dict(self) -> Dict[str, Any]:
        """The flat record p3d-bench writes (JSON lists for the shape and the times)."""
        out: Dict[str, Any] = {"setting": self.setting, **self.stats(), "batch_times_s": list(self.batch_times_s)}
        if self.training:
            out.update(loss_first=self.loss_first, loss_last=self.loss_last, peak_mem_mb=self.peak_mem_mb,
                       peak_mem_mb_per_clip=self.peak_mem_mb_per_clip)
        else:
            out.update(peak_mem_mb=self.peak_mem_mb, minor_faults_per_batch=self.minor_faults_per_batch)
        out.update(device=self.device, device_name=self.device_name, precision=self.precision,
                   channels_last=self.channels_last)
        if not self.training:
            out.update(folded_bn=self.folded_bn, fused_ops=self.fused_ops)
        out.update(batch_size=self.batch_size, clip_shape=list(self.clip_shape), torch_threads=self.torch_threads,
                   torch_version=self.torch_version, warmup=self.warmup, repeats=self.repeats)
        return out


@dataclass(frozen=True)
class ModelStats:
    """Parameters, fp32 size (MiB) and GMACs of one clip of ``clip_shape`` = (C, T, H, W)."""

    params: int
    size_mb: float
    gmacs_per_clip: float
    clip_shape: Tuple[int, ...]

    @classmethod
    def of(cls, model: nn.Module, clip_shape: Sequence[int]) -> "ModelStats":
        """Count ``model`` with :func:`p3d_lightning.models.complexity.model_complexity`."""
        from p3d_lightning.models.complexity import model_complexity

        shape = tuple(int(s) for s in clip_shape)
        c = model_complexity(model, input_shape=shape)
        return cls(params=int(c["params"]), size_mb=float(c["size_mb"]), gmacs_per_clip=float(c["gmacs"]),
                   clip_shape=shape)

    def as_dict(self) -> Dict[str, Any]:
        """``params``, ``size_mb``, ``gmacs_per_clip`` and ``clip_shape`` (a tuple)."""
        return dataclasses.asdict(self)
