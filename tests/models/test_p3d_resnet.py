"""Tests for p3d_lightning.models.p3d_resnet: the trunk, the unit list, clip/crop sizes, tracing."""
import math

import pytest
import torch

from p3d_lightning.models import P3DResNet, block_kinds, create_model, format_block_kinds
from p3d_lightning.models.p3d_resnet import caffe_pooled_len, scaled_width


def test_mixed_unit_order_printed():
    kinds = block_kinds((3, 4, 6, 3), ("A", "B", "C"), (False, False, False, True))
    text = format_block_kinds(kinds)
    print(text)
    assert text == "res2: A B C\nres3: A B C A\nres4: B C A B C A\nres5: 2D 2D 2D"
    assert create_model("p3d").describe() == text


def test_block_kinds_variants():
    assert block_kinds((1, 2), ("A",), (False, False)) == [("A",), ("A", "A")]
    assert block_kinds((2, 2), ("B", "C"), (True, False)) == [("2D", "2D"), ("B", "C")]
    # P3D-199: the cycle runs over all 47 P3D blocks of res2..res4
    kinds = block_kinds((3, 8, 36, 3))
    flat = [k for stage in kinds[:3] for k in stage]
    assert len(flat) == 47 and flat[:4] == ["A", "B", "C", "A"] and flat[-1] == "B"  # 46 % 3 == 1
    assert kinds[3] == ("2D",) * 3
    with pytest.raises(ValueError, match="unknown unit kind"):
        block_kinds((1,), ("X",), (False,))
    with pytest.raises(ValueError, match="same length"):
        block_kinds((1, 1), ("A",), (False,))


def test_model_uses_the_kind_list():
    model = create_model("p3d_tiny", depths=(2, 3, 1, 1))
    built = [tuple(b.kind for b in getattr(model, f"layer{i}")) for i in range(1, 5)]
    assert built == model.block_kinds == block_kinds((2, 3, 1, 1))


def test_stem_and_stage_shapes_p3d():
    """16x160x160 -> stem 8x40x40 -> res2 4x40x40 -> res3 2x20x20 -> res4 1x10x10 -> res5 1x5x5."""
    model = create_model("p3d_tiny").eval()
    shapes = {}
    for name in ("maxpool", "tpool1", "tpool2", "tpool3", "layer4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[2:])))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 160, 160))
    assert shapes == {"maxpool": (8, 40, 40), "tpool1": (4, 40, 40), "tpool2": (2, 20, 20),
                      "tpool3": (1, 10, 10), "layer4": (1, 5, 5)}


@pytest.mark.parametrize("shape", [(15, 32, 32), (16, 40, 56), (24, 33, 33), (32, 64, 48)])
def test_any_allowed_clip_and_crop(shape):
    model = create_model("p3d_tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *shape)).shape == (2, 10)
        assert model.forward_features(torch.randn(1, 3, *shape)).shape == (1, model.num_features)


def _prototxt_pooled_len(length: int, kernel_l: int = 2, stride_l: int = 2, pad_l: int = 0) -> int:
    """pooling3d_layer.cpp, Reshape: float ceil of (L + 2 pad - k) / s, plus 1 (the clip of the
    last window applies only with padding, and every P3D pool has pad_l 0)."""
    return int(math.ceil(float(length + 2 * pad_l - kernel_l) / stride_l)) + 1


# T after pool1 (stem), res2, res3, res4 pools: kernel_l 2, stride_l 2, pad_l 0 in all four
# Pooling3D layers of deploy_p3d_resnet_kinetics.prototxt
CAFFE_T = {15: (8, 4, 2, 1), 16: (8, 4, 2, 1), 18: (9, 5, 3, 2), 20: (10, 5, 3, 2),
           24: (12, 6, 3, 2), 32: (16, 8, 4, 2)}


@pytest.mark.parametrize("t", sorted(CAFFE_T))
def test_temporal_pools_follow_the_prototxt_arithmetic(t):
    lengths, x = [], t
    for _ in range(4):
        x = _prototxt_pooled_len(x)
        lengths.append(x)
    assert tuple(lengths) == CAFFE_T[t]
    model = create_model("p3d_tiny").eval()
    assert model.output_clip_len(t) == CAFFE_T[t][-1]
    seen = {}
    for name in ("maxpool", "tpool1", "tpool2", "tpool3", "layer4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape[2]))
    with torch.no_grad():
        model(torch.randn(1, 3, t, 32, 32))
    assert (seen["maxpool"], seen["tpool1"], seen["tpool2"], seen["tpool3"]) == CAFFE_T[t]
    assert seen["layer4"] == CAFFE_T[t][-1]  # res5 sees what res4's pool leaves


def test_ceil_pools_keep_t16_identical_to_floor_pools():
    """T = 16 halves exactly at every pool, so rounding up changes nothing there."""
    model = create_model("p3d_tiny").eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        ceil_out = model(x)
        for i in (1, 2, 3):
            setattr(model, f"tpool{i}", torch.nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1), ceil_mode=False))
        assert torch.equal(model(x), ceil_out)


def test_clip_length_checks():
    model = create_model("p3d_tiny")
    # Caffe's ceil-mode pools take any T >= 1 (T = 1 stays 1 at every pool)
    assert model.min_clip_len == 1 and model.output_clip_len(1) == 1 and model.output_clip_len(0) == 0
    assert caffe_pooled_len(1, 2, 2) == 1 and caffe_pooled_len(9, 2, 2) == 5 and caffe_pooled_len(0, 2, 2) == 0
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"T=0 is too short.*T >= 1"):
        model(torch.randn(1, 3, 0, 32, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 2, 16, 32, 32))
    with pytest.raises(ValueError, match="5-D clip"):
        model(torch.randn(1, 3, 32, 32))


def test_frame_level_resnet_averages_frames():
    model = create_model("resnet_tiny").eval()
    assert model.min_clip_len == 1
    frames = torch.randn(2, 3, 5, 32, 32)
    with torch.no_grad():
        stack = model(frames)
        per_frame = torch.stack([model(frames[:, :, t:t + 1]) for t in range(5)]).mean(0)
    torch.testing.assert_close(stack, per_frame, atol=1e-5, rtol=1e-5)


def test_head_and_features():
    model = create_model("p3d_tiny", num_classes=7, dropout=0.3).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        feat = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feat), model(x))
    assert model.fc.out_features == 7 and model.dropout.p == 0.3 and feat.shape == (2, 256)


def test_width_mult():
    assert scaled_width(64, 0.125) == 8 and scaled_width(64, 0.01) == 8 and scaled_width(64, 0.5) == 32
    model = create_model("p3d", width_mult=0.25)
    assert model.conv1.out_channels == 16 and model.num_features == 512 and model.fc.in_features == 512
    with pytest.raises(ValueError, match="width_mult"):
        P3DResNet(width_mult=0)


def test_flow_input_channels():
    model = create_model("p3d_tiny", in_channels=2).eval()
    assert model.conv1.weight.shape[1] == 2
    with torch.no_grad():
        assert model(torch.randn(1, 2, 16, 32, 32)).shape == (1, 10)


def test_all_conv_weights_are_5d():
    model = create_model("p3d_tiny")
    for name, p in model.named_parameters():
        if name.endswith(".weight") and "bn" not in name and not name.startswith("fc") and "downsample.1" not in name:
            assert p.dim() == 5, name


def test_fx_symbolic_trace_keeps_validation():
    model = create_model("p3d_tiny").eval()
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))
    with pytest.raises(ValueError, match="too short"):
        gm(torch.randn(1, 3, 0, 32, 32))
    # each BatchNorm is fed by exactly one conv whose output goes nowhere else (BN-foldable)
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], torch.nn.BatchNorm3d):
            src = node.args[0]
            assert src.op == "call_module" and isinstance(modules[src.target], torch.nn.Conv3d)
            assert len(src.users) == 1, node.target


def test_train_step_runs():
    model = create_model("p3d_tiny", num_classes=3)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 16, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_caffe_init_follows_the_prototxt_fillers():
    torch.manual_seed(0)
    rgb = create_model("p3d_tiny", width_mult=0.5, init="caffe")
    conv_w = torch.cat([m.weight.flatten() for m in rgb.modules() if isinstance(m, torch.nn.Conv3d)])
    assert abs(conv_w.std().item() - 0.001) < 1e-4 and abs(conv_w.mean().item()) < 1e-4
    assert abs(rgb.fc.weight.std().item() - 0.001) < 2e-4 and torch.all(rgb.fc.bias == 0)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0)
               for m in rgb.modules() if isinstance(m, torch.nn.BatchNorm3d))
    flow = create_model("p3d_tiny", width_mult=0.5, in_channels=2, init="caffe")
    for m in flow.modules():
        if isinstance(m, torch.nn.Conv3d):  # xavier: uniform +-sqrt(3 / fan_in)
            bound = math.sqrt(3.0 / m.weight[0].numel())
            assert m.weight.abs().max().item() <= bound
            if m.weight.numel() > 2000:
                assert m.weight.abs().max().item() > 0.9 * bound
    assert abs(flow.fc.weight.std().item() - 0.001) < 2e-4  # the flow fc is gaussian too
    with pytest.raises(ValueError, match="init must be one of"):
        create_model("p3d_tiny", init="xavier")
