"""Tests for p3d_lightning.models.fusion: conv + ReLU / add + ReLU fusion, pool rewrites."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from p3d_lightning.models import create_model
from p3d_lightning.models.fastpath import fold_batchnorm, optimize_for_inference
from p3d_lightning.models.fusion import (conv_pointwise, count_fused, fuse_pointwise, fusion_available,
                                         max_pool_t2_2d, temporal_max2)
from training_utils import randomize_bn
from cpu_caps import requires_bf16

needs_onednn = pytest.mark.skipif(not fusion_available(), reason="no oneDNN fused conv in this build")
CL3 = torch.channels_last_3d


@pytest.fixture(scope="module")
def tiny_folded():
    torch.manual_seed(0)
    net = randomize_bn(create_model("p3d_tiny", num_classes=7))
    return net, fold_batchnorm(net)


@pytest.fixture(scope="module")
def clips():
    return torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3))


@needs_onednn
def test_fused_graph_matches_unfused_fp32(tiny_folded, clips):
    net, folded = tiny_folded
    gm = fuse_pointwise(folded)
    # p3d_tiny: res2 A, res3 B, res4 C, res5 2D (one unit each), all with a projection shortcut.
    # conv+relu: stem, 4 reduce convs, 4 S convs, A's T conv. conv+add+relu: 4 restore-or-shortcut
    # convs, B's T (+ S), C's T (+ 0.5 S, the 0.5 of T folded in). Unfused: the one conv of each
    # (restore, shortcut) pair that is computed first. Pools: stem + 3 temporal.
    assert count_fused(gm) == {"conv_relu": 10, "conv_add_relu": 6, "conv_scaled": 1, "max_pool": 4,
                               "conv_unfused": 4}
    with torch.no_grad():
        ref = net(clips)
        torch.testing.assert_close(gm(clips), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gm(clips.contiguous(memory_format=CL3)), ref, rtol=1e-4, atol=1e-4)
        feats = fuse_pointwise(folded, "forward_features")(clips)
        torch.testing.assert_close(feats, net.forward_features(clips), rtol=1e-4, atol=1e-4)
    # the fused graph shares the folded net's parameters; the scaled copy is a buffer of its own
    assert gm.get_parameter("conv1.weight") is folded.conv1.weight
    scaled = [n for n, _ in gm.named_buffers() if n.startswith("_fused_scaled")]
    assert scaled == ["_fused_scaled0_weight", "_fused_scaled0_bias"]


@needs_onednn
def test_fusing_twice_does_not_rescale_shared_weights(tiny_folded, clips):
    """forward and forward_features are fused separately: the folded constant must not compound."""
    net, folded = tiny_folded
    before = {k: v.clone() for k, v in folded.state_dict().items()}
    fuse_pointwise(folded)
    fuse_pointwise(folded, "forward_features")
    for k, v in folded.state_dict().items():
        assert torch.equal(v, before[k]), k


#: stride, padding, dilation, groups of the 1x3x3 conv both conv_pointwise tests call
CONV_ARGS = ([1, 1, 1], [0, 1, 1], [1, 1, 1], 1)


def _conv_inputs(seed, dtype):
    """A channels_last_3d clip (2, 8, 4, 6, 6), 1x3x3 weights (16, 8) and a generator for more."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 4, 6, 6, generator=g).to(dtype).contiguous(memory_format=CL3)
    w = torch.randn(16, 8, 1, 3, 3, generator=g).to(dtype).contiguous(memory_format=CL3)
    return x, w, g


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=requires_bf16)])
def test_conv_pointwise_fused_equals_plain_ops_and_keeps_other(dtype):
    x, w, g = _conv_inputs(0, dtype)
    b = torch.randn(16, generator=g).to(dtype)
    other = torch.randn(2, 16, 4, 6, 6, generator=g).to(dtype).contiguous(memory_format=CL3)
    other_copy = other.clone()
    args = CONV_ARGS
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=3e-2, atol=0.15)
    with torch.no_grad():
        plain = torch.relu(F.conv3d(x, w, b, *args) + other)
        fused = conv_pointwise(x, w, b, *args, "relu", other)
        torch.testing.assert_close(fused, plain, **tol)
        torch.testing.assert_close(conv_pointwise(x, w, b, *args, "relu"), torch.relu(F.conv3d(x, w, b, *args)),
                                   **tol)
        torch.testing.assert_close(conv_pointwise(x, w, None, *args, "none", other),
                                   F.conv3d(x, w, None, *args) + other, **tol)
    assert torch.equal(other, other_copy)
    # with autograd the plain ops run (the fused op has no backward) and gradients flow
    xg = x.float().detach().requires_grad_(True)
    out = conv_pointwise(xg, w.float(), b.float(), *args, "relu", other.float())
    out.sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("t", [15, 16])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pool_rewrites_are_exact(t, ceil_mode, channels_last):
    x = torch.randn(2, 4, t, 11, 10, generator=torch.Generator().manual_seed(t))
    if channels_last:
        x = x.contiguous(memory_format=CL3)
    assert torch.equal(temporal_max2(x, ceil_mode), F.max_pool3d(x, (2, 1, 1), (2, 1, 1), ceil_mode=ceil_mode))
    ref = F.max_pool3d(x, (2, 3, 3), (2, 2, 2), (0, 1, 1), ceil_mode=ceil_mode)
    out = max_pool_t2_2d(x, [3, 3], [2, 2], [1, 1], ceil_mode)
    assert torch.equal(out, ref)
    if channels_last:
        assert out.is_contiguous(memory_format=CL3)


@needs_onednn
def test_optimize_for_inference_fuses_on_cpu_by_default(tiny_folded, clips):
    net, _ = tiny_folded
    fused = optimize_for_inference(net, dtype="fp32")
    plain = optimize_for_inference(net, dtype="fp32", fuse=False)
    assert fused.fused_ops["conv_add_relu"] == 6 and plain.fused_ops == {}
    with torch.no_grad():
        torch.testing.assert_close(fused(clips), net(clips), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fused.forward_features(clips), plain.forward_features(clips),
                                   rtol=1e-4, atol=1e-4)
    # the wrapper can be deep-copied (e.g. by Lightning) and still runs
    clone = copy.deepcopy(fused)
    with torch.no_grad():
        torch.testing.assert_close(clone(clips), fused(clips))


@needs_onednn
@requires_bf16
def test_bf16_fast_path_fuses_and_stays_within_tolerance(tiny_folded, clips):
    net, _ = tiny_folded
    with torch.no_grad():
        bf = optimize_for_inference(net, dtype="bf16")
        assert bf.fused_ops
        ref = net(clips)
        diff = (bf(clips) - ref).abs().max()
        assert diff <= 0.05 * ref.abs().max() + 0.05


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return torch.relu(self.conv(x)).mean((2, 3, 4))
        return self.conv(x).mean((2, 3, 4))


def test_untraceable_model_falls_back_or_raises_when_asked():
    net = _Untraceable().eval()
    x = torch.rand(1, 3, 2, 4, 4)
    fast = optimize_for_inference(net, dtype="fp32")  # default: silently unfused
    assert fast.fused_ops == {}
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x))
    if fusion_available():
        with pytest.raises(RuntimeError, match="cannot trace _Untraceable.forward"):
            optimize_for_inference(net, dtype="fp32", fuse=True)


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=requires_bf16)])
def test_prepacked_weights_follow_in_place_updates_and_are_released(dtype):
    import gc

    from p3d_lightning.models import fusion

    x, w, g = _conv_inputs(1, dtype)
    args = CONV_ARGS
    with torch.no_grad():
        first = conv_pointwise(x, w, None, *args, "relu")
        assert id(w) in fusion._PACKED  # packed once for this input shape
        torch.testing.assert_close(first, torch.relu(F.conv3d(x, w, None, *args)), rtol=3e-2, atol=0.15)
        w.mul_(-1)  # an in-place update must not reuse the stale packing
        second = conv_pointwise(x, w, None, *args, "relu")
        torch.testing.assert_close(second, torch.relu(F.conv3d(x, w, None, *args)), rtol=3e-2, atol=0.15)
        assert not torch.equal(first, second)
        # another input shape gets its own packing
        x2 = torch.randn(1, 8, 2, 5, 5, generator=g).to(dtype).contiguous(memory_format=CL3)
        torch.testing.assert_close(conv_pointwise(x2, w, None, *args, "relu"),
                                   torch.relu(F.conv3d(x2, w, None, *args)), rtol=3e-2, atol=0.15)
    key = id(w)
    del w
    gc.collect()
    assert key not in fusion._PACKED


@needs_onednn
def test_fast_path_built_under_inference_mode(tiny_folded, clips):
    """Lightning's predict builds the fast path inside torch.inference_mode (inference tensors)."""
    net, _ = tiny_folded
    with torch.inference_mode():
        fast = optimize_for_inference(net, dtype="fp32")
        out = fast(clips)
    with torch.no_grad():
        torch.testing.assert_close(out, net(clips), rtol=1e-4, atol=1e-4)
