"""Conv + pointwise fusion for the CPU inference fast path (oneDNN post-ops), with torch.fx.

After BatchNorm folding (:func:`p3d_lightning.models.fastpath.fold_batchnorm`) a P3D unit
is a chain of convolutions, ReLUs, scalar multiplies and residual adds. In eager PyTorch
every one of those element-wise ops is one more pass over a large activation: on a P3D-50
at batch 8 they were about a quarter of the CPU time. oneDNN can apply a ReLU, or a
residual add followed by a ReLU, to a convolution's output while it is still in cache
("post-ops"); PyTorch exposes that as ``torch.ops.mkldnn._convolution_pointwise`` (the
op inductor uses for CPU inference). :func:`fuse_pointwise` rewrites a traced graph so that

    conv -> relu                       becomes  conv_pointwise(x, ..., "relu")
    conv -> add(., other) -> relu      becomes  conv_pointwise(x, ..., "relu", other)
    conv -> mul(., c)                  becomes  the same conv with weight and bias times c
    MaxPool3d((2,1,1), (2,1,1))        becomes  max(x[:, :, 0::2], x[:, :, 1::2])
    MaxPool3d((2,k,k), (2,s,s))        becomes  that temporal maximum, then a 2-D max pool

The last two are the P3D temporal and stem pools: PyTorch's CPU ``max_pool3d`` always
computes argmax indices, and a strided maximum is ~3x faster for a (2,1,1) window.

:func:`conv_pointwise` calls the fused oneDNN op only where it applies (a CPU tensor in
fp32 or bf16, no autograd) and falls back to the plain ops otherwise (a CUDA tensor, an
older PyTorch without the op), so a fused graph always runs, just not always faster. On the
first call for an input shape it also pre-packs the weight into oneDNN's blocked layout
(cached per weight and shape, repacked after an in-place update), which saves a reorder per
call. Inference only: the fused op has no backward.
"""
from __future__ import annotations

import logging
import operator
import weakref
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["conv_pointwise", "temporal_max2", "max_pool_t2_2d", "fuse_pointwise", "fusion_available", "count_fused"]

_FUSED_DTYPES = (torch.float32, torch.bfloat16)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fusion_available() -> bool:
    """True if this PyTorch build has oneDNN (mkldnn) and its fused conv + pointwise op."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):  # pragma: no cover - op namespace missing
        return False


_HAS_FUSED_OP = fusion_available()

# Weights pre-packed into oneDNN's blocked layout for a given input shape, so that the fused
# op does not reorder them on every call (P3D-50 bf16 batch 8: +4-7% clips/s). Keyed on the
# weight's id, dropped when the weight is garbage-collected (tensors cannot be weak dict keys:
# their == is element-wise); an entry holds up to 4 (input shape, weight version) packings, so
# a weight modified in place is packed again. Costs one extra copy of the packed weights.
_PACKED: Dict[int, Dict[tuple, Optional[torch.Tensor]]] = {}
_MAX_PACKED_SHAPES = 4


def _packed_weight(x: torch.Tensor, weight: torch.Tensor, stride: List[int], padding: List[int],
                   dilation: List[int], groups: int) -> torch.Tensor:
    """``weight`` reordered for oneDNN and ``x``'s shape (cached); ``weight`` itself on failure."""
    # inference tensors (made under torch.inference_mode, e.g. in Lightning's predict) have no
    # version counter; they cannot be updated in place outside inference mode anyway
    key = (tuple(x.shape), -1 if weight.is_inference() else weight._version)
    entries = _PACKED.get(id(weight))
    if entries is None:
        entries = _PACKED[id(weight)] = {}
        weakref.finalize(weight, _PACKED.pop, id(weight), None)
    packed = entries.get(key, False)
    if packed is False:
        reorder = {5: torch._C._nn.mkldnn_reorder_conv3d_weight,
                   4: torch._C._nn.mkldnn_reorder_conv2d_weight}.get(weight.dim())
        try:
            packed = reorder(weight.detach().to_mkldnn(), padding, stride, dilation, groups,
                             list(x.shape)) if reorder is not None else None
        except (RuntimeError, TypeError):  # layout/dtype oneDNN cannot pre-pack: use as is
            packed = None
        if len(entries) >= _MAX_PACKED_SHAPES:
            entries.clear()
        entries[key] = packed
    return weight if packed is None else packed


def conv_pointwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   stride: List[int], padding: List[int], dilation: List[int], groups: int,
                   unary: str = "relu", other: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``relu(conv(x) + other)`` (``other`` optional, ``unary`` 'relu' or 'none') in one call.

    On a CPU tensor in fp32/bf16 with autograd off this is a single oneDNN convolution with
    post-ops; anywhere else it is ``F.convNd`` followed by the add and the ReLU. ``other``
    is read, never modified.
    """
    if (_HAS_FUSED_OP and x.device.type == "cpu" and x.dtype in _FUSED_DTYPES
            and weight.dtype == x.dtype and not (torch.is_grad_enabled() and
                                                 (x.requires_grad or weight.requires_grad))
            and (other is None or (other.dtype == x.dtype and other.device.type == "cpu"))):
        attr = "none" if unary == "none" else unary
        w = _packed_weight(x, weight, stride, padding, dilation, groups)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, w, bias, padding, stride, dilation, groups, attr, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, w, bias, padding, stride, dilation, groups, "add", None,
            None if unary == "none" else attr, [], "")
    out = _CONV_FN[x.dim() - 2](x, weight, bias, stride, padding, dilation, groups)
    if other is not None:
        out = out + other
    return torch.relu(out) if unary == "relu" else out


def temporal_max2(x: torch.Tensor, ceil_mode: bool = False) -> torch.Tensor:
    """``nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1), ceil_mode=ceil_mode)`` as a strided maximum."""
    t = x.shape[2] // 2 * 2
    out = torch.maximum(x[:, :, 0:t:2], x[:, :, 1:t:2])
    if ceil_mode and x.shape[2] % 2:  # the last window holds a single frame
        out = torch.cat([out, x[:, :, t:]], dim=2)
    return out


def max_pool_t2_2d(x: torch.Tensor, kernel: List[int], stride: List[int], padding: List[int],
                   ceil_mode: bool) -> torch.Tensor:
    """``max_pool3d`` with a (2, kh, kw) window and temporal stride 2, as a temporal maximum
    followed by a 2-D max pool over the frames (exactly equal; the P3D stem pool).

    For a ``channels_last_3d`` input the frames are a free view ``(N*T, C, H, W)``, and the
    2-D CPU kernel is faster than the 3-D one; any other layout uses ``F.max_pool3d``.
    """
    if not x.is_contiguous(memory_format=torch.channels_last_3d) or x.shape[1] == 1:
        return F.max_pool3d(x, [2] + list(kernel), [2] + list(stride), [0] + list(padding),
                            ceil_mode=ceil_mode)
    y = temporal_max2(x, ceil_mode)
    n, c, t, h, w = y.shape
    frames = y.transpose(1, 2).reshape(n * t, c, h, w)  # a view: (N*T, C, H, W) channels_last
    out = F.max_pool2d(frames, kernel, stride, padding, ceil_mode=ceil_mode)
    return out.reshape(n, t, c, out.shape[2], out.shape[3]).transpose(1, 2)


# --------------------------------------------------------------------------------------
# Graph rewriting
# --------------------------------------------------------------------------------------
class _Bound(nn.Module):
    """Traceable wrapper whose ``forward`` is another method of ``net`` (e.g. forward_features)."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x):
        return getattr(self.net, self.method)(x)


def _triple(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _is_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, torch.relu_)
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return False


def _fusable_conv(node: fx.Node, modules: Dict[str, nn.Module], calls: Dict[str, int]) -> Optional[nn.Module]:
    """The conv module called by ``node`` if it can become a fused call, else None."""
    if node.op != "call_module":
        return None
    conv = modules.get(node.target)
    if not isinstance(conv, (nn.Conv2d, nn.Conv3d)) or calls.get(node.target, 0) != 1:
        return None
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or len(node.users) != 1:
        return None
    if len(node.args) != 1 or node.kwargs:
        return None
    return conv


def _replace(graph: fx.Graph, last: fx.Node, new_args: tuple, fn: Callable, dead: Sequence[fx.Node]) -> fx.Node:
    with graph.inserting_after(last):
        new = graph.call_function(fn, new_args)
    last.replace_all_uses_with(new)
    for n in dead:  # users first
        graph.erase_node(n)
    return new


def fuse_pointwise(net: nn.Module, method: str = "forward") -> fx.GraphModule:
    """Trace ``net.<method>`` with torch.fx and fuse conv -> (add ->) relu chains.

    ``net`` should be in eval mode with its BatchNorms folded (a BN between the conv and
    the ReLU stops the fusion). The returned GraphModule shares ``net``'s parameters; the
    only new tensors are the rescaled weights of convs whose output was multiplied by a
    constant (P3D-C's ``0.5 * T(s)``), stored as buffers of the GraphModule. Raises
    whatever torch.fx raises if ``net`` is not traceable. ``count_fused(gm)`` reports what
    was fused.
    """
    root = net if method == "forward" else _Bound(net, method)
    gm = fx.symbolic_trace(root)
    graph = gm.graph
    modules = dict(gm.named_modules())
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    # 1. drop nn.Identity (what BN folding leaves behind)
    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)

    # 2. max pools with a temporal window and stride of 2 (P3D's stem and temporal pools)
    for node in list(graph.nodes):
        m = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(m, nn.MaxPool3d) or m.return_indices or len(node.args) != 1:
            continue
        k, st, pad, dil = (_triple(v) for v in (m.kernel_size, m.stride or m.kernel_size,
                                                 m.padding, m.dilation))
        if k[0] != 2 or st[0] != 2 or pad[0] != 0 or dil != (1, 1, 1):
            continue
        if k[1:] == (1, 1) and st[1:] == (1, 1):
            _replace(graph, node, (node.args[0], bool(m.ceil_mode)), temporal_max2, [node])
        else:
            _replace(graph, node, (node.args[0], list(k[1:]), list(st[1:]), list(pad[1:]),
                                   bool(m.ceil_mode)), max_pool_t2_2d, [node])

    # 3. conv nodes become conv_pointwise calls; weights via get_attr (shared parameters)
    scaled = 0

    def conv_args(node: fx.Node, conv: nn.Module, scale: Optional[float] = None) -> tuple:
        nonlocal scaled
        if scale is None:
            w = graph.get_attr(f"{node.target}.weight")
            b = graph.get_attr(f"{node.target}.bias") if conv.bias is not None else None
        else:  # fold a constant multiply into a private copy of the weights
            name = f"_fused_scaled{scaled}"
            scaled += 1
            with torch.no_grad():
                gm.register_buffer(f"{name}_weight", conv.weight.detach() * scale)
                gm.register_buffer(f"{name}_bias", conv.bias.detach() * scale
                                   if conv.bias is not None else None)
            w = graph.get_attr(f"{name}_weight")
            b = graph.get_attr(f"{name}_bias") if conv.bias is not None else None
        return (node.args[0], w, b, list(conv.stride), list(conv.padding), list(conv.dilation),
                conv.groups)

    for node in list(graph.nodes):
        conv = _fusable_conv(node, modules, calls)
        if conv is None:
            continue
        user = next(iter(node.users))
        scale = None
        chain = [node]
        # conv -> mul(., c): absorb the constant
        if (user.op == "call_function" and user.target in (operator.mul, torch.mul)
                and len(user.args) == 2 and not user.kwargs):
            c = user.args[1] if user.args[0] is node else user.args[0]
            if isinstance(c, (int, float)) and not isinstance(c, bool):
                scale = float(c)
                chain.append(user)
                if len(user.users) != 1:
                    with graph.inserting_before(user):
                        new = graph.call_function(conv_pointwise, conv_args(node, conv, scale) + ("none",))
                    user.replace_all_uses_with(new)
                    graph.erase_node(user)
                    graph.erase_node(node)
                    continue
                user = next(iter(user.users))
        head = chain[-1]
        if _is_relu(user, modules):
            with graph.inserting_before(user):
                new = graph.call_function(conv_pointwise, conv_args(node, conv, scale) + ("relu",))
            user.replace_all_uses_with(new)
            for n in [user] + chain[::-1]:
                graph.erase_node(n)
        elif (user.op == "call_function" and user.target in (operator.add, torch.add)
              and len(user.args) == 2 and not user.kwargs and len(user.users) == 1
              and _is_relu(next(iter(user.users)), modules)):
            other = user.args[1] if user.args[0] is head else user.args[0]
            if not isinstance(other, fx.Node) or other is head:  # x + x: nothing to fuse with
                continue
            relu = next(iter(user.users))
            with graph.inserting_before(relu):
                new = graph.call_function(conv_pointwise,
                                          conv_args(node, conv, scale) + ("relu", other))
            relu.replace_all_uses_with(new)
            for n in [relu, user] + chain[::-1]:
                graph.erase_node(n)
        elif scale is not None:
            with graph.inserting_before(head):
                new = graph.call_function(conv_pointwise, conv_args(node, conv, scale) + ("none",))
            head.replace_all_uses_with(new)
            for n in chain[::-1]:
                graph.erase_node(n)

    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return gm


def count_fused(gm: fx.GraphModule) -> Dict[str, int]:
    """How many fused calls of each kind a :func:`fuse_pointwise` graph holds."""
    out = {"conv_relu": 0, "conv_add_relu": 0, "conv_scaled": 0, "max_pool": 0, "conv_unfused": 0}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is conv_pointwise:
            if len(node.args) > 8:
                out["conv_add_relu"] += 1
            elif node.args[7] == "relu":
                out["conv_relu"] += 1
            if isinstance(node.args[1], fx.Node) and str(node.args[1].target).startswith("_fused_scaled"):
                out["conv_scaled"] += 1
        elif node.op == "call_function" and node.target in (temporal_max2, max_pool_t2_2d):
            out["max_pool"] += 1
        elif node.op == "call_module" and isinstance(modules.get(node.target), (nn.Conv2d, nn.Conv3d)):
            out["conv_unfused"] += 1
    return out
