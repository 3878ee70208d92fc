"""Two CPU processes (gloo, ddp_spawn) give exactly the single-process video-level accuracy,
including a test set whose size is not divisible by the world size (sampler padding)."""

import pytorch_lightning as pl
import pytest
import torch

from p3d_lightning.module import P3DClassifier
from training_utils import quiet_warnings, tiny_datamodule

quiet_warnings()


@pytest.fixture
def odd_root(tiny_synthetic_root, tmp_path):
    """The tiny set with one test video removed: 7 videos x 3 clips = 21 samples (odd)."""
    import shutil

    root = tmp_path / "odd"
    shutil.copytree(tiny_synthetic_root, root)
    lines = (root / "testlist01.txt").read_text().splitlines()
    (root / "testlist01.txt").write_text("\n".join(lines[:-1]) + "\n")
    return str(root)


def _validate(root, ckpt, devices):
    dm = tiny_datamodule(root, num_eval_clips=3, batch_size=4)
    model = P3DClassifier.load_from_checkpoint(ckpt)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                         logger=False, enable_progress_bar=False, enable_model_summary=False, precision="32-true")
    return trainer.validate(model, datamodule=dm, verbose=False)[0]


def test_two_process_ddp_equals_single_process(odd_root, tmp_path):
    torch.manual_seed(0)
    model = P3DClassifier("p3d_tiny", num_classes=4)
    # make predictions informative: perturb the classifier so videos get different scores
    with torch.no_grad():
        model.model.fc.weight.mul_(50)
    ckpt = tmp_path / "m.ckpt"
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(ckpt)

    single = _validate(odd_root, ckpt, 1)
    double = _validate(odd_root, ckpt, 2)
    assert single["val/num_videos"] == 7 and double["val/num_videos"] == 7
    for key in ("val/video_acc1", "val/video_acc5", "val/clip_acc1", "val/clip_acc5"):
        assert double[key] == pytest.approx(single[key], abs=1e-7), key
