"""BatchNorm folding: every BatchNorm that directly follows a convolution is folded into it
(``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``), step 1 of the
inference fast path (:func:`p3d_lightning.models.fastpath.optimize_for_inference`)."""

from __future__ import annotations

import copy
import logging
from typing import Dict, List, Tuple

import torch
from torch import nn

log = logging.getLogger(__name__)

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

__all__ = ["find_conv_bn_pairs", "fold_batchnorm"]


def _fx_conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """conv -> BN module-name pairs found by tracing ``model.forward`` with torch.fx."""
    import torch.fx

    gm = torch.fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    calls: Dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN_TYPES):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        if not isinstance(modules.get(src.target), _CONV_TYPES):
            continue
        if len(src.users) != 1 or calls[src.target] != 1 or calls[node.target] != 1:
            continue  # conv output used elsewhere, or module shared: folding would be wrong
        pairs.append((src.target, node.target))
    return pairs


def _named_conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """Fallback pairing without tracing: ``convX``/``bnX`` siblings and Sequential neighbours."""
    pairs = []
    for parent_name, parent in model.named_modules():
        prefix = f"{parent_name}." if parent_name else ""
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            for (n1, m1), (n2, m2) in zip(children, children[1:]):
                if isinstance(m1, _CONV_TYPES) and isinstance(m2, _BN_TYPES):
                    pairs.append((prefix + n1, prefix + n2))
            continue
        by_name = dict(children)
        for name, mod in children:
            if isinstance(mod, _BN_TYPES) and name.startswith("bn"):
                conv = by_name.get("conv" + name[2:])
                if isinstance(conv, _CONV_TYPES):
                    pairs.append((prefix + "conv" + name[2:], prefix + name))
    return pairs


def find_conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """Return ``[(conv_name, bn_name), ...]`` for every foldable conv -> BatchNorm pair.

    Uses a torch.fx trace of ``model.forward``; falls back to a naming/Sequential pass
    when the model is not traceable (logged at INFO level).
    """
    try:
        return _fx_conv_bn_pairs(model)
    except Exception as err:  # untraceable control flow etc.
        log.info("fastpath: torch.fx trace failed (%s: %s); using module-pair BN folding",
                 type(err).__name__, err)
        return _named_conv_bn_pairs(model)


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv into that conv (eval semantics).

    Returns the (copied unless ``inplace``) model in eval mode; each folded BN is replaced by
    ``nn.Identity`` and its conv gains a bias. BNs that do not follow a conv are kept.
    The number of folded pairs is stored as ``model._fastpath_folded_bn``.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    pairs = find_conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        if bn.running_mean is None or bn.running_var is None:
            continue  # track_running_stats=False: eval uses batch stats, not foldable
        if bn.num_features != conv.out_channels:
            continue
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        w, b = torch.nn.utils.fusion.fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, gamma, beta)
        conv.weight = w
        conv.bias = b
        _set_submodule(model, bn_name, nn.Identity())
    model._fastpath_folded_bn = len(pairs)
    return model
