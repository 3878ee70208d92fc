"""Two CPU processes (gloo, ddp_spawn) give exactly the single-process video-level accuracy,
including a test set whose size is not divisible by the world size (sampler padding), and with
one decode per video (eval_decode="video") against one process seeking per clip."""

import pytest

from training_utils import (drop_last_test_video, informative_checkpoint, quiet_warnings, tiny_datamodule,
                            validate_checkpoint)

quiet_warnings()


@pytest.fixture
def odd_root(tiny_synthetic_root, tmp_path):
    """The tiny set with one test video removed: 7 videos x 3 clips = 21 samples (odd)."""
    return drop_last_test_video(tiny_synthetic_root, tmp_path / "odd")


def test_two_process_ddp_equals_single_process(odd_root, tmp_path):
    ckpt = informative_checkpoint(tmp_path / "m.ckpt")
    single = validate_checkpoint(ckpt, tiny_datamodule(odd_root, num_eval_clips=3, batch_size=4), 1)
    double = validate_checkpoint(ckpt, tiny_datamodule(odd_root, num_eval_clips=3, batch_size=4), 2)
    assert single["val/num_videos"] == 7 and double["val/num_videos"] == 7
    for key in ("val/video_acc1", "val/video_acc5", "val/clip_acc1", "val/clip_acc5"):
        assert double[key] == pytest.approx(single[key], abs=1e-7), key


def test_ddp_video_metric_unchanged(odd_root, tmp_path):
    """7 test videos x 3 clips on 2 ranks with one decode per video (a padded, repeated video)
    give exactly the single-process per-clip-seeking metrics."""
    ckpt = informative_checkpoint(tmp_path / "m.ckpt")

    def validate(devices, eval_decode):
        dm = tiny_datamodule(odd_root, num_eval_clips=3, batch_size=4, eval_decode=eval_decode)
        return validate_checkpoint(ckpt, dm, devices)

    single = validate(1, "clip")
    double = validate(2, "video")
    assert single["val/num_videos"] == double["val/num_videos"] == 7
    for key in ("val/video_acc1", "val/video_acc5", "val/clip_acc1", "val/clip_acc5", "val/failed_clips"):
        assert double[key] == pytest.approx(single[key], abs=1e-7), key
