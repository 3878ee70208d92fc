"""Tests for p3d_lightning.models.units: shapes, gradients, and the Caffe-graph equations."""
import pytest
import torch
import torch.nn.functional as F

from p3d_lightning.models.units import UNIT_KINDS, UNIT_TYPES, Bottleneck, make_unit
from training_utils import randomize_bn


@pytest.mark.parametrize("kind", UNIT_KINDS)
@pytest.mark.parametrize("stride,cin", [(1, 32), (2, 16)])
def test_output_shape(kind, stride, cin):
    unit = make_unit(kind, cin, 8, stride)
    y = unit(torch.randn(2, cin, 4, 8, 8))
    assert y.shape == (2, 32, 4, 8 // stride, 8 // stride)  # T is never strided
    assert (unit.downsample is None) == (stride == 1 and cin == 32)
    assert unit.kind == kind


def test_parameter_names_shared_by_all_kinds():
    names = {k: {n for n, _ in make_unit(k, 16, 8, 2).named_parameters()} for k in UNIT_KINDS}
    temporal = {"conv3.weight", "bn3.weight", "bn3.bias"}
    assert names["A"] == names["B"] == names["C"]
    assert names["A"] - names["2D"] == temporal
    assert names["2D"] == {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                           "conv4.weight", "bn4.weight", "bn4.bias", "downsample.0.weight",
                           "downsample.1.weight", "downsample.1.bias"}
    unit = make_unit("A", 16, 8, 2)
    assert unit.conv2.kernel_size == (1, 3, 3) and unit.conv3.kernel_size == (3, 1, 1)
    assert unit.conv3.padding == (1, 0, 0) and unit.conv1.stride == (1, 2, 2) and unit.conv2.stride == (1, 1, 1)
    assert all(p.dim() == 5 for n, p in unit.named_parameters() if "conv" in n or n == "downsample.0.weight")


@pytest.mark.parametrize("kind", UNIT_KINDS)
def test_gradient_reaches_spatial_and_temporal(kind):
    unit = make_unit(kind, 16, 8, 2)
    unit(torch.randn(2, 16, 4, 8, 8)).square().mean().backward()
    assert unit.conv2.weight.grad.abs().sum() > 0
    if kind != "2D":
        # every temporal tap, not only the centre one, gets a gradient (T > 1)
        assert (unit.conv3.weight.grad.abs().sum(dim=(0, 1, 3, 4)) > 0).all()
    else:
        assert not hasattr(unit, "conv3")


def _expected(unit, x):
    """The official Caffe graph, written out with the unit's own modules."""
    bn = lambda m, t: F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
    u = F.relu(bn(unit.bn1, unit.conv1(x)))
    s_of = lambda t: F.relu(bn(unit.bn2, unit.conv2(t)))
    t_of = lambda t: bn(unit.bn3, unit.conv3(t))
    if unit.kind == "A":
        h = F.relu(t_of(s_of(u)))
    elif unit.kind == "B":
        h = F.relu(s_of(u) + t_of(u))
    elif unit.kind == "C":
        s = s_of(u)
        h = F.relu(0.5 * s + 0.5 * t_of(s))
    else:
        h = s_of(u)
    shortcut = x if unit.downsample is None else bn(unit.downsample[1], unit.downsample[0](x))
    return F.relu(bn(unit.bn4, unit.conv4(h)) + shortcut)


@pytest.mark.parametrize("kind", UNIT_KINDS)
def test_caffe_equations(kind):
    unit = randomize_bn(make_unit(kind, 16, 8, 2), seed=1)
    x = torch.randn(2, 16, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), _expected(unit, x))


def _temporal_input(unit, x):
    seen = {}
    unit.conv3.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0].clone()))
    unit.conv2.register_forward_hook(lambda m, inp, out: seen.setdefault("s_in", inp[0].clone()))
    with torch.no_grad():
        unit(x)
    return seen


def test_order_of_s_and_t():
    x = torch.randn(1, 16, 4, 6, 6)
    for kind in ("A", "C"):  # cascade: T sees the S branch's ReLU(BN(S(u)))
        unit = randomize_bn(make_unit(kind, 16, 8))
        seen = _temporal_input(unit, x)
        with torch.no_grad():
            s = unit.relu(unit.bn2(unit.conv2(seen["s_in"])))
        torch.testing.assert_close(seen["in"], s)
    unit = randomize_bn(make_unit("B", 16, 8))  # parallel: S and T see the same u
    seen = _temporal_input(unit, x)
    torch.testing.assert_close(seen["in"], seen["s_in"])


def test_temporal_weights_change_output_and_2d_is_per_frame():
    x = torch.randn(1, 16, 4, 6, 6)
    for kind in ("A", "B", "C"):
        unit = randomize_bn(make_unit(kind, 16, 8))
        with torch.no_grad():
            y0 = unit(x)
            unit.conv3.weight.mul_(-1.5)
            assert not torch.allclose(unit(x), y0), kind
    # a 2D unit mixes nothing across frames: frame t of the output depends only on frame t
    unit = randomize_bn(make_unit("2D", 16, 8))
    with torch.no_grad():
        torch.testing.assert_close(unit(x)[:, :, 1:2], unit(x[:, :, 1:2]))


def test_c_is_half_half():
    """With T zeroed out, C outputs ReLU(0.5 * s) before the restore: half of the 2D unit's S path."""
    unit_c = randomize_bn(make_unit("C", 16, 8))
    with torch.no_grad():
        unit_c.conv3.weight.zero_()
        unit_c.bn3.bias.zero_()
        unit_c.bn3.running_mean.zero_()
        u = torch.rand(1, 8, 2, 5, 5)
        torch.testing.assert_close(unit_c.spatiotemporal(u), 0.5 * unit_c.spatial(u))


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown unit kind 'D'"):
        make_unit("D", 8, 8)
    assert set(UNIT_TYPES) == set(UNIT_KINDS)
    assert all(issubclass(c, Bottleneck) for c in UNIT_TYPES.values())


def test_bf16_autocast_gradients_finite_for_two_frame_temporal_conv():
    """Regression: oneDNN's bf16 weight gradient of a 3x1x1 conv on T=2 input is sometimes NaN."""
    from p3d_lightning.models.units import UnitA

    torch.manual_seed(0)
    for _ in range(12):
        unit = UnitA(128, 32)
        x = torch.randn(8, 128, 2, 5, 5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = unit(x)
        out.float().square().mean().backward()
        for name, p in unit.named_parameters():
            assert torch.isfinite(p.grad).all(), name
