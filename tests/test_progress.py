"""The training progress bar: the global step of max_steps, validation accuracy, user bars kept."""

from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar

from p3d_lightning.module import P3DClassifier
from p3d_lightning.progress import StepProgressBar


def _trainer(callbacks, max_steps=600, global_step=12):
    return SimpleNamespace(callbacks=callbacks, max_steps=max_steps, global_step=global_step,
                           progress_bar_metrics={"train/loss": 0.5, "val/video_acc1": 0.75}, loggers=[])


def test_step_of_max_steps_leads_the_metrics():
    bar = StepProgressBar()
    metrics = bar.get_metrics(_trainer([bar]), None)
    assert list(metrics)[0] == "step" and metrics["step"] == "12/600"
    assert metrics["val/video_acc1"] == 0.75 and "v_num" not in metrics
    assert "step" not in bar.get_metrics(_trainer([bar], max_steps=-1), None)  # epoch-based run


def test_module_replaces_only_the_default_bar():
    module = P3DClassifier(arch="p3d_tiny", num_classes=4, width_mult=0.125)
    module._trainer = _trainer([TQDMProgressBar(refresh_rate=7)])
    (bar,) = module.configure_callbacks()
    assert type(bar) is StepProgressBar and bar.refresh_rate == 7
    class OwnBar(TQDMProgressBar):
        pass

    module._trainer = _trainer([OwnBar()])
    assert module.configure_callbacks() == []  # the user's own choice is kept
    module._trainer = _trainer([])  # progress bar disabled: none added
    assert module.configure_callbacks() == []


def test_lightning_summary_counts_flops_from_the_data_clip_shape():
    from pytorch_lightning.utilities.model_summary import ModelSummary

    module = P3DClassifier(arch="p3d_tiny", num_classes=4, width_mult=0.125)
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(clip_len=8, crop_size=32), ckpt_path=None)
    module.setup("fit")
    assert tuple(module.example_input_array.shape) == (1, 3, 8, 32, 32)
    module._trainer = None
    summary = ModelSummary(module, max_depth=1)
    assert summary.total_flops > 0


def test_validation_accuracy_is_in_the_progress_bar(tiny_synthetic_root, tmp_path):
    from training_utils import quiet_warnings, tiny_datamodule

    quiet_warnings()
    torch.manual_seed(0)
    module = P3DClassifier(arch="p3d_tiny", num_classes=4, width_mult=0.125, channels_last=False)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=tiny_datamodule(tiny_synthetic_root))
    assert "val/video_acc1" in trainer.progress_bar_metrics
    assert "val/clip_acc1" in trainer.callback_metrics and "val/clip_acc1" not in trainer.progress_bar_metrics
