"""Shared test helpers: a tiny synthetic video set, tiny runs, BN randomisation."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict

import pytorch_lightning as pl

# Tiny dataset (same as conftest.tiny_synthetic_root): 4 classes, 8 train + 8 test videos, 20 frames, 48x64.
TINY_DATA = dict(num_pairs=2, videos_per_class=4, clips_per_group=2, size=(48, 64), num_frames=20, seed=0)


def make_tiny_dataset(root: Path) -> str:
    """Write (once) the tiny synthetic set under ``root`` and return its path."""
    from p3d_lightning.data import generate_synthetic_dataset

    root = Path(root)
    if not (root / "classInd.txt").is_file():
        generate_synthetic_dataset(str(root), progress=False, num_workers=1, **TINY_DATA)
    return str(root)


def tiny_datamodule(root: str, clip_len: int = 16, crop: int = 32, num_eval_clips: int = 2,
                    batch_size: int = 4, **kw: Any):
    """A VideoDataModule on the tiny set: 4 classes, small crops, no workers, no flips."""
    from p3d_lightning.data import VideoDataModule

    args: Dict[str, Any] = dict(
        dataset="synthetic", root=root, num_classes=4, clip_len=clip_len, resize=(40, 52), crop_size=crop,
        num_eval_clips=num_eval_clips, batch_size=batch_size, num_workers=0, horizontal_flip=False,
        seed=0, progress=False, synthetic_generate=True, synthetic_num_pairs=2, synthetic_videos_per_class=4,
        synthetic_size=(48, 64), synthetic_num_frames=20,
    )
    args.update(kw)
    return VideoDataModule(**args)


def tiny_trainer(tmp: Path, **kw: Any) -> pl.Trainer:
    """A quiet CPU trainer in fp32 writing under ``tmp``."""
    args: Dict[str, Any] = dict(
        accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp),
        num_sanity_val_steps=0, deterministic=False,
    )
    args.update(kw)
    return pl.Trainer(**args)


def quiet_warnings() -> None:
    """Silence expected, noisy warnings (partial-BN eval modules, few-worker hints)."""
    for msg in (".*modules in eval mode.*", ".*does not have many workers.*", ".*is smaller than the logging interval.*",
                ".*GPU available but not used.*", ".*sync_dist.*"):
        warnings.filterwarnings("ignore", message=msg)
    os.environ.setdefault("WANDB_MODE", "disabled")


def fixed_clips_loader(root: str, n: int = 4):
    """A loader yielding the same ``n`` evaluation clips (one per video) every epoch."""
    from torch.utils.data import DataLoader

    dm = tiny_datamodule(root, num_eval_clips=1)
    dm.setup("fit")
    samples = [dm.val_dataset[i] for i in range(n)]
    return DataLoader(samples, batch_size=n, shuffle=False)


def loss_curve(model, loader, tmp: Path, steps: int, precision: str = "32-true") -> list:
    """Train ``model`` for ``steps`` steps on ``loader``; return the per-step training losses."""
    losses: list = []

    class _Rec(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = tiny_trainer(tmp, max_steps=steps, limit_val_batches=0, precision=precision, callbacks=[_Rec()])
    trainer.fit(model, train_dataloaders=loader)
    return losses


def randomize_bn(model, seed: int = 0, mean_std: float = 0.1, bias_std: float = 0.1):
    """Random BatchNorm3d statistics and affine parameters (so BN is not the identity); eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * mean_std)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * bias_std)
    return model.eval()


def drop_last_test_video(src: Path, dst: Path) -> str:
    """Copy the tiny set ``src`` to ``dst`` with its last test video left out: 7 test videos, an
    odd count, so two ranks see a padded (repeated) sample. Returns ``dst``."""
    import shutil

    shutil.copytree(src, dst)
    lines = (Path(dst) / "testlist01.txt").read_text().splitlines()
    (Path(dst) / "testlist01.txt").write_text("\n".join(lines[:-1]) + "\n")
    return str(dst)


def informative_checkpoint(path: Path) -> Path:
    """Save an untrained ``p3d_tiny`` (4 classes) whose classifier is scaled up, so videos get
    clearly different scores and accuracies are not ties; returns ``path``."""
    import torch

    from p3d_lightning.module import P3DClassifier

    torch.manual_seed(0)
    model = P3DClassifier("p3d_tiny", num_classes=4)
    with torch.no_grad():
        model.model.fc.weight.mul_(50)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def validate_checkpoint(ckpt: Path, datamodule, devices: int = 1) -> Dict[str, float]:
    """``trainer.validate`` of ``ckpt`` on CPU in fp32; ``devices > 1`` spawns that many processes (gloo)."""
    from p3d_lightning.module import P3DClassifier

    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                         logger=False, enable_progress_bar=False, enable_model_summary=False, precision="32-true")
    return trainer.validate(P3DClassifier.load_from_checkpoint(ckpt), datamodule=datamodule, verbose=False)[0]
