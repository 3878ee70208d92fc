"""Other codebases' key layouts, loaded strictly through :mod:`p3d_lightning.models.weights`.

* :func:`inflate_imagenet_resnet` -- an ImageNet 2D ResNet in torchvision's key layout
  (``resnet50-*.pth``) into any P3D variant; new temporal convs get an init under which the
  network starts out computing exactly the 2D ResNet (or the paper's small-std gaussian).
* :func:`load_qijiezhao` / :func:`export_qijiezhao` -- the released P3D-199 Kinetics weights
  in the qijiezhao/pseudo-3d-pytorch key layout.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import List

import torch
from torch import nn

from .units import Bottleneck
from .weights import _CLASSIFIER, CheckpointError, LoadReport, StateDictOrPath, _assign, _strip_module, read_state_dict

__all__ = ["TEMPORAL_INITS", "inflate_imagenet_resnet", "init_temporal", "load_qijiezhao", "export_qijiezhao"]

TEMPORAL_INITS = ("identity", "gaussian")


_TV_RESTORE = re.compile(r"^(layer\d+\.\d+\.)(conv|bn)3\.")


def _torchvision_to_ours(key: str) -> str:
    """torchvision's restore conv3/bn3 is our conv4/bn4; every other name is shared."""
    return _TV_RESTORE.sub(r"\g<1>\g<2>4.", key)


def init_temporal(model: nn.Module, mode: str = "identity", std: float = 1e-3) -> List[str]:
    """Initialise every temporal conv (conv3) and its BN (bn3); returns the keys set.

    ``"identity"``: each unit starts out computing exactly its 2D counterpart (in eval mode,
    BN running stats mean 0 / var 1): T has only its centre tap, the identity matrix; then
    A: BN(T(s)) = s (bn3 weight sqrt(1 + eps)), so ReLU(s) = s;
    B: BN(T(u)) = 0 (bn3 weight and bias 0; T itself stays non-zero so gradients still reach
    both T and bn3.weight), so ReLU(s + 0) = s;
    C: BN(T(s)) = s as in A, so ReLU(0.5 s + 0.5 s) = s.
    ``"gaussian"``: the paper's small-std gaussian, T ~ N(0, std), bn3 default.
    """
    if mode not in TEMPORAL_INITS:
        raise ValueError(f"unknown temporal_init {mode!r}; expected one of {TEMPORAL_INITS}")
    keys = []
    with torch.no_grad():
        for name, unit in model.named_modules():
            if not (isinstance(unit, Bottleneck) and unit.has_temporal):
                continue
            conv, bn = unit.conv3, unit.bn3
            bn.reset_running_stats()  # mean 0, var 1
            bn.bias.zero_()
            if mode == "gaussian":
                nn.init.normal_(conv.weight, 0.0, std)
                bn.weight.fill_(1.0)
            else:
                conv.weight.zero_()
                conv.weight[:, :, conv.kernel_size[0] // 2, 0, 0] = torch.eye(conv.out_channels, conv.in_channels)
                bn.weight.fill_(0.0 if unit.kind == "B" else math.sqrt(1.0 + bn.eps))
            keys += [f"{name}.conv3.weight"] + [f"{name}.bn3.{k}" for k, _ in bn.state_dict().items()]
    return keys


def inflate_imagenet_resnet(
    model: nn.Module,
    state_dict_or_path: StateDictOrPath,
    temporal_init: str = "identity",
    drop_classifier: bool = False,
    gaussian_std: float = 1e-3,
) -> LoadReport:
    """Inflate a 2D ImageNet ResNet (torchvision key layout) into a P3D model or our ResNet-50.

    Mapping: ``conv1`` 7x7 -> 1x7x7, every 3x3 -> 1x3x3, 1x1 -> 1x1x1, torchvision's
    restore ``layerX.Y.conv3/bn3`` -> our ``conv4/bn4``; the temporal ``conv3/bn3`` of P3D
    units are not in the file and are set by :func:`init_temporal` (``temporal_init``
    "identity" or "gaussian" with ``gaussian_std``). Strict: every other model key must come
    from the file and every file key must be used; ``drop_classifier=True`` skips ``fc`` (for
    fine-tuning to another number of classes; the model's ``fc`` keeps its init).

    Note: torchvision's ResNet-50 puts the stride on the 3x3 conv and pads its max pool;
    ours follows Caffe (stride on the first 1x1, unpadded ceil-mode pool), so the inflated
    net is close to, not identical with, torchvision's own forward pass.
    """
    if temporal_init not in TEMPORAL_INITS:
        raise ValueError(f"unknown temporal_init {temporal_init!r}; expected one of {TEMPORAL_INITS}")
    sd, source = read_state_dict(state_dict_or_path)
    sd = _strip_module(sd)
    if any(".conv4." in k or ".conv_normal." in k or k.startswith("conv1_custom.") for k in sd):
        raise CheckpointError(
            f"{source}: not a torchvision-layout 2D ResNet (has conv4/conv_normal/conv1_custom keys); "
            "use load_checkpoint or load_qijiezhao"
        )
    report = LoadReport(source)
    report.initialized = init_temporal(model, temporal_init, gaussian_std)
    skip_model = list(report.initialized) + (list(_CLASSIFIER) if drop_classifier else [])
    return _assign(
        model, source, sd, _torchvision_to_ours, report, skip_model_keys=skip_model,
        skip_source=lambda k: drop_classifier and k in _CLASSIFIER,
    )


# ----------------------------------------------------------------------------- qijiezhao layout

_QZ_TO_OURS = [(re.compile(r"^conv1_custom\."), "conv1."), (re.compile(r"\.conv_normal\."), ".conv2."),
               (re.compile(r"\.bn_normal\."), ".bn2.")]


def _qijiezhao_to_ours(key: str) -> str:
    for pattern, repl in _QZ_TO_OURS:
        key = pattern.sub(repl, key)
    return key


def _check_qijiezhao_structure(model: nn.Module) -> None:
    kinds = getattr(model, "block_kinds", None)
    ok = kinds is not None and all("2D" not in stage for stage in kinds[:-1]) and all(k == "2D" for k in kinds[-1])
    if not ok:
        raise ValueError(
            "the qijiezhao layout needs P3D units in every stage but the last and 2D units in the last "
            f"(res5); this model has {kinds}"
        )


def load_qijiezhao(model: nn.Module, path_or_sd: StateDictOrPath, drop_classifier: bool = False) -> LoadReport:
    """Load a checkpoint in the qijiezhao/pseudo-3d-pytorch layout (the released P3D-199 weights).

    Accepts the ``{'state_dict': ...}`` wrapping and a ``module.`` prefix. ``conv1_custom`` ->
    ``conv1``; res5's ``conv_normal/bn_normal`` -> ``conv2/bn2`` and its 4-D kernels -> 5-D.
    Strict: every key consumed, none missing, shapes equal (``drop_classifier`` skips ``fc``).
    """
    _check_qijiezhao_structure(model)
    sd, source = read_state_dict(path_or_sd)
    sd = _strip_module(sd)
    report = LoadReport(source)
    return _assign(
        model, source, sd, _qijiezhao_to_ours, report,
        skip_model_keys=_CLASSIFIER if drop_classifier else (),
        skip_source=lambda k: drop_classifier and k in _CLASSIFIER,
    )


def export_qijiezhao(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Our model's state dict in the qijiezhao layout (flat; wrap as ``{'state_dict': sd}`` to
    mimic the released files). Inverse of :func:`load_qijiezhao`: 2D units get
    ``conv_normal/bn_normal`` and 4-D conv kernels, the stem becomes ``conv1_custom``.
    Like ``state_dict()``, the tensors share storage with the model (``torch.save`` copies).
    """
    _check_qijiezhao_structure(model)
    units_2d = {name for name, m in model.named_modules() if isinstance(m, Bottleneck) and not m.has_temporal}
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, tensor in model.state_dict().items():
        owner = next((u for u in units_2d if key.startswith(u + ".")), None)
        if key.startswith("conv1."):
            key = "conv1_custom." + key[len("conv1."):]
        elif owner is not None:
            rest = key[len(owner) + 1:]
            rest = re.sub(r"^conv2\.", "conv_normal.", re.sub(r"^bn2\.", "bn_normal.", rest))
            if tensor.dim() == 5:
                tensor = tensor.squeeze(2)
            key = f"{owner}.{rest}"
        out[key] = tensor
    return out
