"""``P3DClassifier``: the LightningModule that trains, evaluates and extracts features.

The network is a plain :class:`~p3d_lightning.models.P3DResNet` in ``self.model``; this module
is the "system" around it: loss, metrics, optimiser and schedule, partial BN, pretrained
loading, precision/memory-format options and the predict step used for feature extraction.

Batches are dicts (see the data contract)::

    {"clip": (N, C, T, H, W) float, "label": (N,) long, "video_idx": (N,) long, "clip_idx": (N,) long,
     "valid": (N,) bool (optional; False for clips that failed to decode, default all True)}

Evaluation leaves invalid clips out of the loss and of clip/video accuracy, logs how many
clips (``<stage>/failed_clips``) and whole videos (``<stage>/failed_videos``, counted as misses)
failed, and warns with the file names; ``predict_step`` passes ``valid`` on to the feature writer.

Optimisation follows the paper's Table 1 recipe by default: SGD, lr 0.001 divided by 10 every
3K iterations (``lr_schedule="step"``, stepped per optimiser step), dropout 0.9, BatchNorm
frozen except the first layer ("partial BN", as in TSN). The 7.5K iteration budget and the
batch of 128 clips are trainer/data settings (``max_steps``, devices x batch x
``accumulate_grad_batches``).
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from pytorch_lightning.utilities import rank_zero_warn
from torchmetrics.classification import MulticlassAccuracy

from p3d_lightning import resume
from p3d_lightning.metrics import MultiClipAccuracy
from p3d_lightning.models.zoo import ArchName
from p3d_lightning.schedules import StepLR
from p3d_lightning.precision import bf16_supported, default_precision  # noqa: F401 (re-exported)

__all__ = ["P3DClassifier", "StepLR", "default_precision", "bf16_supported", "BATCH_KEYS"]

BATCH_KEYS = ("clip", "label", "video_idx", "clip_idx")
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _check_batch(batch: Any, stage: str) -> Dict[str, Tensor]:
    if not isinstance(batch, dict) or any(k not in batch for k in BATCH_KEYS[:2]):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise TypeError(f"P3DClassifier.{stage}_step: expected a dict batch with keys {BATCH_KEYS}, got {got}")
    clip = batch["clip"]
    if clip.ndim != 5:
        raise ValueError(f"P3DClassifier.{stage}_step: batch['clip'] must be (N, C, T, H, W), got {tuple(clip.shape)}")
    return batch


def _valid_mask(batch: Dict[str, Tensor], n: int, device: torch.device) -> Tensor:
    """Bool (N,): ``batch["valid"]``, or all True for batches without it."""
    valid = batch.get("valid")
    if valid is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return torch.as_tensor(valid, device=device).bool().reshape(n)


def _stage_dataset(trainer: Any, stage: str) -> Any:
    """The dataset evaluated in ``stage`` ("val" / "test"), for naming failed videos; None if unknown."""
    if trainer is None:
        return None
    dm = getattr(trainer, "datamodule", None)
    ds = getattr(dm, f"{stage}_dataset", None) if dm is not None else None
    if ds is not None:
        return ds
    loaders = getattr(trainer, f"{stage}_dataloaders", None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return getattr(loaders, "dataset", None)


class P3DClassifier(pl.LightningModule):
    """Video classifier around a P3D (or frame-level ResNet-50) network.

    Args:
        arch: model name from :func:`p3d_lightning.models.list_models` (``resnet50``, ``p3d_a``,
            ``p3d_b``, ``p3d_c``, ``p3d``, ``p3d131``, ``p3d199``, ``p3d_tiny``, ...).
        num_classes: classifier outputs (linked from ``data.num_classes`` in the CLI).
        width_mult: channel width multiplier (``None``: the architecture's own, 1.0 for the
            paper networks; small values such as 0.125 for CPU runs and tests).
        dropout: dropout before the classifier (``None``: the architecture's default, 0.9 for
            the Table 1 networks as in the paper's UCF101 ablation).
        in_channels: input channels (3 RGB, 2 optical flow).
        zero_init_residual: start every residual unit as the identity (last BN gamma = 0);
            for training from scratch (the synthetic configs), not in the paper.
        init: weight initialisation of a network trained from scratch and of a new classifier:
            ``kaiming`` (default; He normal convs, PyTorch's default fc) or ``caffe`` (the
            authors' deploy prototxts: gaussian std 0.001 convs and fc, xavier convs for a
            2-channel flow network; see docs/models.md). Loaded weights replace it.
        pretrained: path to initial weights, loaded in :meth:`setup` unless the trainer
            resumes from a checkpoint (so ``load_from_checkpoint`` never reads this file).
        pretrained_format: ``imagenet`` (a 2D ResNet-50 state dict, inflated to 3D),
            ``qijiezhao`` (released P3D-199 weights in the qijiezhao key layout) or
            ``lightning`` (a ``.ckpt`` written by this module).
        temporal_init: init of new temporal convs when inflating ImageNet weights
            (``identity`` or ``gaussian``).
        drop_classifier: do not load the pretrained classifier (fine-tuning to new classes).
        lr, momentum, weight_decay, nesterov: SGD settings.
        lr_schedule: ``step`` (lr x ``lr_gamma`` every ``lr_step_size`` optimiser steps),
            ``cosine`` (to ``min_lr_ratio`` x lr at ``max_steps``) or ``constant``.
        warmup_steps: linear warm-up steps before the schedule.
        max_steps: length of the cosine schedule; default: the trainer's estimated steps.
        partial_bn: freeze every BatchNorm except the first (running stats and affine).
        channels_last: run convolutions in ``channels_last_3d`` memory format.
        compile: wrap the network in ``torch.compile`` for training and evaluation.
        label_smoothing: cross-entropy label smoothing.
        inference_fast_path: use :func:`p3d_lightning.models.fastpath.optimize_for_inference`
            (BN folding, bf16 where native, channels_last_3d) in ``predict``.
    """

    def __init__(
        self,
        arch: ArchName = "p3d",
        num_classes: int = 101,
        width_mult: Optional[float] = None,
        dropout: Optional[float] = None,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        init: Literal["kaiming", "caffe"] = "kaiming",
        pretrained: Optional[str] = None,
        pretrained_format: Literal["imagenet", "qijiezhao", "lightning"] = "imagenet",
        temporal_init: Literal["identity", "gaussian"] = "identity",
        drop_classifier: bool = True,
        lr: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        lr_schedule: Literal["step", "cosine", "constant"] = "step",
        lr_step_size: int = 3000,
        lr_gamma: float = 0.1,
        warmup_steps: int = 0,
        max_steps: Optional[int] = None,
        min_lr_ratio: float = 0.0,
        partial_bn: bool = True,
        channels_last: bool = True,
        compile: bool = False,
        label_smoothing: float = 0.0,
        inference_fast_path: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from p3d_lightning.models import create_model

        overrides: Dict[str, Any] = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "zero_init_residual": zero_init_residual,
            "init": init,
        }
        if width_mult is not None:
            overrides["width_mult"] = width_mult
        if dropout is not None:
            overrides["dropout"] = dropout
        self.model = create_model(arch, **overrides)
        # (CPU bf16 training: the T convs protect themselves, see models/units.py.)
        if channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self._bn_layers = [m for m in self.model.modules() if isinstance(m, _BN_TYPES)]
        if partial_bn:
            for bn in self._bn_layers[1:]:
                for p in bn.parameters():
                    p.requires_grad_(False)
        self.train_acc1 = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")
        self.val_metrics = MultiClipAccuracy(num_classes)
        self.test_metrics = MultiClipAccuracy(num_classes)
        self._pretrained_loaded = pretrained is None
        self._train_seed: Optional[int] = None  # base of the per-batch seeds (p3d_lightning.resume)
        self.__dict__["_compiled"] = None  # not a submodule: keeps state_dict keys plain
        self.__dict__["_fast"] = None

    # ------------------------------------------------------------------ network
    def train(self, mode: bool = True) -> "P3DClassifier":
        """Set train/eval mode; with ``partial_bn`` every BN but the first stays in eval mode."""
        super().train(mode)
        if mode and self.hparams.partial_bn:
            for bn in self._bn_layers[1:]:
                bn.eval()
        return self

    def _net(self):
        if self.hparams.compile:
            if self._compiled is None:
                self.__dict__["_compiled"] = torch.compile(self.model)
            return self._compiled
        return self.model

    def _prepare(self, clip: Tensor) -> Tensor:
        if self.hparams.channels_last and clip.ndim == 5:
            clip = clip.contiguous(memory_format=torch.channels_last_3d)
        return clip

    def forward(self, clip: Tensor) -> Tensor:
        """Logits (N, num_classes) for clips (N, C, T, H, W)."""
        return self._net()(self._prepare(clip))

    # ------------------------------------------------------------------ weights
    def setup(self, stage: str) -> None:
        """Load ``pretrained`` weights unless the trainer restores a checkpoint anyway; take the
        clip shape of the data module as ``example_input_array`` (FLOPs in Lightning's summary)."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        clip_len, crop = getattr(dm, "clip_len", None), getattr(dm, "crop_size", None)
        if isinstance(clip_len, int) and isinstance(crop, int):
            self.example_input_array = torch.zeros(1, self.hparams.in_channels, clip_len, crop, crop)
        resuming = self._trainer is not None and getattr(self.trainer, "ckpt_path", None) is not None
        if not self._pretrained_loaded and not resuming:
            self.load_pretrained()

    def load_pretrained(self) -> Any:
        """Load ``hparams.pretrained`` into the network now; returns the loader's report."""
        hp = self.hparams
        path, fmt = hp.pretrained, hp.pretrained_format
        if path is None:
            raise ValueError("P3DClassifier.load_pretrained: model.pretrained is not set")
        from p3d_lightning.models import converters, weights

        if fmt == "imagenet":
            report = converters.inflate_imagenet_resnet(
                self.model, path, temporal_init=hp.temporal_init, drop_classifier=hp.drop_classifier
            )
        elif fmt == "qijiezhao":
            report = converters.load_qijiezhao(self.model, path, drop_classifier=hp.drop_classifier)
        elif fmt == "lightning":
            report = weights.load_checkpoint(self.model, path, drop_classifier=hp.drop_classifier, prefix="model.")
        else:
            raise ValueError(
                f"model.pretrained_format must be 'imagenet', 'qijiezhao' or 'lightning', got {fmt!r}"
            )
        if hp.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self._pretrained_loaded = True
        return report

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = _check_batch(batch, "training")
        logits = self(batch["clip"])
        labels = batch["label"]
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.hparams.label_smoothing)
        n = labels.shape[0]
        self.train_acc1(logits.detach(), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("train/clip_acc1", self.train_acc1, on_step=True, on_epoch=True, batch_size=n)
        return loss

    def _eval_step(self, batch: Dict[str, Tensor], stage: str, metric: MultiClipAccuracy) -> Tensor:
        batch = _check_batch(batch, stage)
        for key in ("video_idx", "clip_idx"):
            if key not in batch:
                raise KeyError(f"P3DClassifier.{stage}_step: batch has no {key!r}; video-level metrics need it")
        logits = self(batch["clip"]).float()
        labels = batch["label"]
        valid = _valid_mask(batch, logits.shape[0], logits.device)
        num_valid = int(valid.sum())
        # clips that failed to decode are zeros: they score nothing and weigh nothing
        loss = F.cross_entropy(logits[valid], labels[valid]) if num_valid else logits.new_zeros(())
        metric.update(logits.softmax(dim=1), labels, batch["video_idx"], batch["clip_idx"], valid)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=num_valid, sync_dist=True)
        return loss

    def _log_eval(self, stage: str, metric: MultiClipAccuracy) -> None:
        # compute() gathers every rank's clips and drops DDP padding duplicates, so the values
        # are already global and identical on all ranks: no sync_dist needed.
        result = metric.compute()
        failed = metric.failed_clips
        metric.reset()
        values = {
            f"{stage}/clip_acc1": result["clip_acc1"],
            f"{stage}/clip_acc5": result["clip_acc5"],
            f"{stage}/video_acc1": result["video_acc1"],
            f"{stage}/video_acc5": result["video_acc5"],
            f"{stage}/num_videos": result["num_videos"].float(),
            f"{stage}/failed_clips": result["num_failed_clips"].float(),
            f"{stage}/failed_videos": result["num_failed_videos"].float(),
        }
        shown = f"{stage}/video_acc1"  # the number a researcher watches: in the progress bar
        self.log_dict({k: v.to(self.device) for k, v in values.items() if k != shown}, prog_bar=False)
        self.log(shown, values[shown].to(self.device), prog_bar=True)
        if failed.numel():
            self._warn_failed(stage, failed, int(result["num_failed_videos"]), int(result["num_videos"]))

    def _warn_failed(self, stage: str, failed: Tensor, num_failed_videos: int, num_videos: int) -> None:
        """One warning (rank zero) naming the videos whose clips failed to decode in ``stage``."""
        dataset = _stage_dataset(self._trainer, stage)
        videos = getattr(dataset, "videos", None)
        ids = sorted({int(v) for v in failed[:, 0]})
        names = [str(getattr(videos[i], "path", i)) if videos is not None and 0 <= i < len(videos) else f"video_idx={i}"
                 for i in ids]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        from p3d_lightning.data.dataset import BadVideoWarning

        rank_zero_warn(
            f"{stage}: {failed.shape[0]} clips of {len(ids)} videos failed to decode and were left out of "
            f"{stage} metrics; {num_failed_videos} of the {num_videos} videos had no valid clip and count as "
            f"misses in {stage}/video_acc*. Files: {shown}",
            category=BadVideoWarning,
        )

    def validation_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val", self.val_metrics)

    def test_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test", self.test_metrics)

    def on_predict_start(self) -> None:
        if self.hparams.inference_fast_path:
            from p3d_lightning.models.fastpath import optimize_for_inference

            self.__dict__["_fast"] = optimize_for_inference(self.model, channels_last=self.hparams.channels_last)

    def on_predict_end(self) -> None:
        self.__dict__["_fast"] = None

    def predict_step(self, batch: Dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Dict[str, Tensor]:
        """Per clip: pool5 ``feature`` (N, F), softmax ``probs`` (N, K), ids, ``valid`` and label (CPU fp32).

        ``valid`` is False for clips that failed to decode (their feature is that of a zero
        clip); :class:`~p3d_lightning.features.FeatureWriter` leaves them out.
        """
        batch = _check_batch(batch, "predict")
        net = self._fast if self._fast is not None else self.model
        clip = batch["clip"] if self._fast is not None else self._prepare(batch["clip"])
        feature = net.forward_features(clip)  # (N, F)
        probs = net.forward_head(feature).float().softmax(dim=1)  # (N, K)
        n = feature.shape[0]
        out = {
            "feature": feature.float().cpu(),
            "probs": probs.cpu(),
            "video_idx": batch.get("video_idx", torch.full((n,), -1)).cpu(),
            "clip_idx": batch.get("clip_idx", torch.zeros(n, dtype=torch.long)).cpu(),
            "valid": _valid_mask(batch, n, feature.device).cpu(),
        }
        if "label" in batch:
            out["label"] = batch["label"].cpu()
        return out

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov
        )
        total = hp.max_steps
        if total is None and hp.lr_schedule == "cosine":
            total = int(self.trainer.estimated_stepping_batches)
        factor = StepLR(hp.lr_schedule, hp.lr_step_size, hp.lr_gamma, hp.warmup_steps, total or 1, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def configure_callbacks(self):
        """Lightning's default progress bar, with the global step of ``max_steps`` added (step-based
        schedules never show it otherwise); a progress bar the user chose is left alone."""
        from pytorch_lightning.callbacks import TQDMProgressBar

        from p3d_lightning.progress import StepProgressBar

        trainer = self._trainer
        if trainer is not None and any(type(cb) is TQDMProgressBar for cb in trainer.callbacks):
            bar = next(cb for cb in trainer.callbacks if type(cb) is TQDMProgressBar)
            return [StepProgressBar(refresh_rate=bar.refresh_rate, leave=bar._leave)]
        return []

    def on_fit_start(self) -> None:
        if self._train_seed is None:  # not restored from a checkpoint: this run's seed
            self._train_seed = resume.run_seed()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Exact resume: every batch draws its random numbers (dropout) from a seed fixed by its
        # position in the run, so a resumed run needs no generator state (see resume.py).
        if self._train_seed is None:
            self._train_seed = resume.run_seed()
        trainer = self._trainer
        if trainer is None:
            resume.seed_step(self._train_seed, 0, batch_idx)
            return
        micro = batch_idx % max(1, int(trainer.accumulate_grad_batches))
        resume.seed_step(self._train_seed, trainer.global_step, micro, trainer.global_rank)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        seed = self._train_seed if self._train_seed is not None else resume.run_seed()
        checkpoint[resume.RNG_KEY] = resume.rng_checkpoint_state(seed)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self._pretrained_loaded = True  # checkpoint weights supersede ``pretrained``
        state = checkpoint.get(resume.RNG_KEY)
        if state is not None:
            self._train_seed = int(state["base_seed"])

