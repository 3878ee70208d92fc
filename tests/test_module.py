"""P3DClassifier: fast_dev_run per variant, overfitting, partial BN, schedules, checkpoints,
pretrained loading, channels_last and the bf16 training fast path."""

import pytest
import pytorch_lightning as pl
import torch

from p3d_lightning.module import P3DClassifier, StepLR, bf16_supported, default_precision
from training_utils import fixed_clips_loader, loss_curve, quiet_warnings, tiny_datamodule, tiny_trainer

quiet_warnings()


@pytest.mark.parametrize("arch", ["resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d"])
def test_fast_dev_run_each_table1_variant(arch, tiny_synthetic_root, tmp_path):
    frames = arch == "resnet50"
    dm = tiny_datamodule(str(tiny_synthetic_root), clip_len=1 if frames else 16, num_eval_clips=3 if frames else 2)
    model = P3DClassifier(arch, num_classes=4, width_mult=0.0625)
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, datamodule=dm)
    m = trainer.callback_metrics
    for key in ("train/loss", "train/clip_acc1", "val/clip_acc1", "val/clip_acc5", "val/video_acc1", "val/video_acc5"):
        assert key in m, key
    assert torch.isfinite(m["train/loss"])


def test_overfit_a_few_clips_drives_loss_down(tiny_synthetic_root, tmp_path):
    pl.seed_everything(0)
    model = P3DClassifier("p3d_tiny", num_classes=4, dropout=0.0, lr=0.01, partial_bn=False, lr_schedule="constant")
    losses = loss_curve(model, fixed_clips_loader(str(tiny_synthetic_root)), tmp_path, steps=12)
    assert len(losses) == 12
    assert losses[-1] < 0.1 * losses[0], losses


def test_partial_bn_freezes_all_but_first_bn(tiny_synthetic_root):
    model = P3DClassifier("p3d_tiny", num_classes=4, partial_bn=True)
    bns = model._bn_layers
    assert len(bns) > 2
    model.train()
    assert bns[0].training and not any(bn.training for bn in bns[1:])
    assert all(p.requires_grad for p in bns[0].parameters())
    assert not any(p.requires_grad for bn in bns[1:] for p in bn.parameters())
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 16, 32, 32))
    assert not torch.equal(before[0], bns[0].running_mean)  # the first BN adapts
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before[1:], bns[1:]))
    model.eval()
    assert not bns[0].training
    opt = model.configure_optimizers()["optimizer"]
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)
    free = P3DClassifier("p3d_tiny", num_classes=4, partial_bn=False).train()
    assert all(bn.training for bn in free._bn_layers)


def test_lr_schedules():
    paper = StepLR("step", step_size=3000, gamma=0.1, warmup_steps=0, total_steps=7500)
    assert [paper(s) for s in (0, 2999, 3000, 5999, 6000, 7499)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = StepLR("cosine", step_size=1, gamma=1, warmup_steps=10, total_steps=110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(60) == pytest.approx(0.5) and warm(110) == pytest.approx(0.0, abs=1e-9)
    assert StepLR("constant", 1, 0.1, 0, 1)(10_000) == 1.0
    model = P3DClassifier("p3d_tiny", num_classes=4, lr=0.01, lr_step_size=2, lr_gamma=0.5)
    cfg = model.configure_optimizers()
    assert cfg["lr_scheduler"]["interval"] == "step"
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    assert sched.state_dict()["lr_lambdas"][0]["step_size"] == 2  # the schedule object is checkpointed


def test_checkpoint_round_trip_needs_no_arguments(tiny_synthetic_root, tmp_path):
    dm = tiny_datamodule(str(tiny_synthetic_root))
    model = P3DClassifier("p3d_tiny", num_classes=4, dropout=0.3, lr=0.02, lr_schedule="cosine", max_steps=2)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = P3DClassifier.load_from_checkpoint(path)
    assert dict(loaded.hparams) == dict(model.hparams)
    model.eval(), loaded.eval()
    x = torch.randn(2, 3, 16, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


def test_pretrained_lightning_checkpoint_and_clean_reload(tiny_synthetic_root, tmp_path):
    src = P3DClassifier("p3d_tiny", num_classes=4)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(src, datamodule=tiny_datamodule(str(tiny_synthetic_root)))
    ckpt = tmp_path / "src.ckpt"
    trainer.save_checkpoint(ckpt)

    # fine-tune to 6 classes: everything but the classifier comes from the checkpoint
    dst = P3DClassifier("p3d_tiny", num_classes=6, pretrained=str(ckpt), pretrained_format="lightning")
    dst.setup("fit")
    for name, value in src.model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(dst.model.state_dict()[name], value), name
    # load_from_checkpoint must not read the pretrained file again
    dst_ckpt = tmp_path / "dst.ckpt"
    pl.Trainer(logger=False, enable_progress_bar=False).strategy.connect(dst)
    torch.save({"state_dict": dst.state_dict(), "hyper_parameters": dict(dst.hparams),
                "pytorch-lightning_version": pl.__version__}, dst_ckpt)
    ckpt.unlink()
    again = P3DClassifier.load_from_checkpoint(dst_ckpt)
    again.setup("test")  # would fail if it tried to read the deleted pretrained file
    torch.testing.assert_close(again.model.fc.weight, dst.model.fc.weight)
    with pytest.raises(Exception, match="not found|No such file"):
        P3DClassifier("p3d_tiny", num_classes=4, pretrained=str(ckpt), pretrained_format="lightning").setup("fit")


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    a = P3DClassifier("p3d_tiny", num_classes=4, channels_last=True).eval()
    b = P3DClassifier("p3d_tiny", num_classes=4, channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    conv = a.model.conv1.weight if hasattr(a.model, "conv1") else next(
        p for p in a.model.parameters() if p.ndim == 5)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 16, 32, 32)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_batch_errors_are_clear():
    model = P3DClassifier("p3d_tiny", num_classes=4)
    with pytest.raises(TypeError, match="dict batch"):
        model.training_step((torch.randn(1, 3, 16, 32, 32), torch.zeros(1)), 0)
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        model.training_step({"clip": torch.randn(1, 3, 32, 32), "label": torch.zeros(1, dtype=torch.long)}, 0)


def test_default_precision_follows_hardware():
    p = default_precision("cpu")
    assert p == ("bf16-mixed" if bf16_supported("cpu") else "32-true")


def test_bf16_training_matches_fp32_within_noise(tiny_synthetic_root, tmp_path):
    """The training fast path (bf16-mixed + channels_last_3d) follows the fp32 loss curve."""
    loader = fixed_clips_loader(str(tiny_synthetic_root))
    curves = {}
    for precision in ("32-true", "bf16-mixed"):
        pl.seed_everything(0)
        model = P3DClassifier("p3d_tiny", num_classes=4, dropout=0.0, lr=0.01, partial_bn=False,
                              lr_schedule="constant", channels_last=True)
        curves[precision] = torch.tensor(loss_curve(model, loader, tmp_path, steps=12, precision=precision))
    fp32, bf16 = curves["32-true"], curves["bf16-mixed"]
    assert torch.isfinite(bf16).all()
    # same init and data: the first loss differs by bf16 rounding only
    assert abs(fp32[0] - bf16[0]) < 0.05 * fp32[0], (fp32, bf16)
    # both converge, and the curves enclose about the same area (trajectories drift apart step by
    # step, as two fp32 runs with different summation order would)
    assert fp32[-1] < 0.1 * fp32[0] and bf16[-1] < 0.1 * bf16[0], (fp32, bf16)
    assert abs(fp32.mean() - bf16.mean()) < 0.25 * fp32.mean(), (fp32, bf16)


def test_bf16_temporal_conv_gradients_are_finite():
    """Regression: oneDNN bf16 weight grads of a 3x1x1 conv at T=2 (res4 of 16-frame P3D) were NaN."""
    torch.manual_seed(0)
    model = P3DClassifier("p3d", num_classes=4, width_mult=0.125, partial_bn=False)
    for _ in range(2):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.randn(2, 3, 16, 64, 64))
        out.float().sum().backward()
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, bad


def test_evaluation_leaves_out_a_video_broken_after_setup(tiny_synthetic_root, tmp_path):
    """A test video that breaks after indexing: its clips are excluded, it counts as a miss,
    no other video gains a clip, and the failure is logged and named."""
    import shutil

    from p3d_lightning.data.dataset import BadVideoWarning

    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic_root, root)
    dm = tiny_datamodule(str(root), num_eval_clips=2, batch_size=2)  # one batch holds only the broken clips
    dm.setup("validate")
    ds = dm.val_dataset
    torch.manual_seed(0)
    model = P3DClassifier("p3d_tiny", num_classes=4).eval()
    with torch.no_grad():
        model.model.fc.weight.mul_(50)  # informative, varied predictions
        probs = model(torch.stack([ds[i]["clip"] for i in range(len(ds))])).softmax(1).view(8, 2, 4)  # (V, clips, K)
    labels = torch.tensor([v.label for v in ds.videos])
    broken = 4  # a video the model gets right
    others = torch.arange(8) != broken
    clip_hits = probs.argmax(2) == labels[:, None]  # (V, clips)
    video_hits = probs.mean(1).argmax(1) == labels
    expected_clip = clip_hits[others].float().mean().item()
    expected_video = (video_hits & others).float().sum().item() / 8  # the broken video is a miss
    assert video_hits[broken] and 0 < expected_video < video_hits.float().mean()  # breaking it must cost a hit

    open(ds.videos[broken].path, "wb").close()  # truncated after indexing
    with pytest.warns(BadVideoWarning) as record:
        res = tiny_trainer(tmp_path).validate(model, datamodule=dm, verbose=False)[0]
    assert res["val/failed_clips"] == 2 and res["val/failed_videos"] == 1
    assert res["val/num_videos"] == 8  # not silently dropped from the denominator
    assert res["val/clip_acc1"] == pytest.approx(expected_clip, abs=1e-6)
    assert res["val/video_acc1"] == pytest.approx(expected_video, abs=1e-6)
    summary = [str(w.message) for w in record if "left out of val metrics" in str(w.message)]
    assert len(summary) == 1 and ds.videos[broken].path in summary[0] and "count as misses" in summary[0]
    # the loss is over the valid clips only
    valid_probs = probs[others].reshape(-1, 4)
    expected_loss = torch.nn.functional.nll_loss(valid_probs.log(), labels[others].repeat_interleave(2))
    assert res["val/loss"] == pytest.approx(expected_loss.item(), rel=1e-4)


def test_caffe_init_through_the_module():
    """``model.init: caffe`` reaches the network: the prototxts' gaussian 0.001 fillers (RGB)
    and xavier convs (2-channel flow); the default stays He normal."""
    rgb = P3DClassifier(arch="p3d_tiny", num_classes=8, init="caffe", partial_bn=False)
    assert rgb.hparams.init == "caffe"
    assert abs(float(rgb.model.fc.weight.std()) - 0.001) < 2e-4 and float(rgb.model.fc.bias.abs().max()) == 0.0
    conv = next(m for m in rgb.model.modules() if isinstance(m, torch.nn.Conv3d))
    assert abs(float(conv.weight.std()) - 0.001) < 3e-4
    flow = P3DClassifier(arch="p3d_tiny", num_classes=8, in_channels=2, init="caffe", partial_bn=False)
    conv = next(m for m in flow.model.modules() if isinstance(m, torch.nn.Conv3d))
    bound = (3.0 / conv.weight[0].numel()) ** 0.5
    assert float(conv.weight.abs().max()) <= bound and float(conv.weight.std()) > 0.5 * bound / 3 ** 0.5
    default = P3DClassifier(arch="p3d_tiny", num_classes=8, partial_bn=False)
    assert float(default.model.fc.weight.std()) > 0.01
