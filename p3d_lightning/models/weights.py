"""Weight loading, strict and explicit: nothing here runs inside a model constructor.

* :func:`load_checkpoint` -- our own key layout (``model.state_dict()``, a Lightning ``.ckpt``).
* :func:`inflate_imagenet_resnet` -- an ImageNet 2D ResNet in torchvision's key layout
  (``resnet50-*.pth``) into any P3D variant; new temporal convs get an init under which the
  network starts out computing exactly the 2D ResNet (or the paper's small-std gaussian).
* :func:`load_qijiezhao` / :func:`export_qijiezhao` -- the released P3D-199 Kinetics weights
  in the qijiezhao/pseudo-3d-pytorch key layout.

Every loader reads files with ``torch.load(weights_only=True)``, refuses shape mismatches,
missing and unexpected keys (the classifier may be dropped only when asked), and returns a
:class:`LoadReport` saying what it loaded.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .units import Bottleneck

__all__ = [
    "CheckpointError",
    "LoadReport",
    "describe_load_error",
    "read_torch_file",
    "load_module_checkpoint",
    "read_state_dict",
    "load_checkpoint",
    "inflate_imagenet_resnet",
    "init_temporal",
    "load_qijiezhao",
    "export_qijiezhao",
    "TEMPORAL_INITS",
]

StateDictOrPath = Union[str, os.PathLike, Mapping[str, torch.Tensor]]
TEMPORAL_INITS = ("identity", "gaussian")
_CLASSIFIER = ("fc.weight", "fc.bias")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and key."""


@dataclass
class LoadReport:
    """What a loader did.

    Attributes:
        source: the file (or ``"<state dict>"``) the tensors came from.
        loaded: model keys filled from the source.
        initialized: model keys set by an init rule instead (inflation's temporal convs).
        kept: model keys left as they were (the classifier when ``drop_classifier``).
        dropped: source keys not used, each with the reason.
    """

    source: str
    loaded: List[str] = field(default_factory=list)
    initialized: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.initialized:
            lines.append(f"initialized {len(self.initialized)} (not in the source): {_preview(self.initialized)}")
        if self.kept:
            lines.append(f"kept {len(self.kept)} model tensors unchanged: {_preview(self.kept)}")
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} source keys: {_preview(self.dropped)}")
        return "\n".join(lines)


def _preview(keys: Sequence[str], n: int = 4) -> str:
    more = f", ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ----------------------------------------------------------------------------- reading


def describe_load_error(err: BaseException) -> str:
    """A one-line reason for a failed ``torch.load(weights_only=True)``.

    For a pickle that needs other objects it is torch's "unsupported GLOBAL ..." line (what the
    file tried to build), without torch's advice to retry with ``weights_only=False``, which
    would run whatever the file holds.
    """
    text = str(err).strip()
    if "Weights only load failed" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or ln.lower().startswith("unsupported")), None)
        detail = detail or next((ln for ln in lines[1:] if "weights_only" not in ln and "torch.load" not in ln), "")
        return ("refused: not a torch file of tensors and plain values only"
                + (f" ({detail[:300]})" if detail else "") + "; nothing in it was run")
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__


def read_torch_file(path: Union[str, os.PathLike], what: str, hint: str = "") -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors naming the file.

    Only tensors, dicts, lists, tuples, strings and numbers load; a pickle that would build any
    other object (and so could run code) is refused before anything of it runs, as is a
    truncated or non-torch file. Raises ``FileNotFoundError`` or ``ValueError`` naming ``path``
    and ``what`` was expected (``hint``: how to make a good one).
    """
    path = os.fspath(path)
    tail = f"; {hint}" if hint else ""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {path}{tail}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, bad zip, truncated file: all mean "not a valid file"
        raise ValueError(f"cannot read {what} {path}: {describe_load_error(err)}{tail}") from None


def load_module_checkpoint(module_cls, path: Union[str, os.PathLike], map_location="cpu", **kwargs):
    """``module_cls.load_from_checkpoint(path, weights_only=True)`` (a LightningModule class),
    with an error naming the file instead of torch's advice to retry with ``weights_only=False``.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` for one that
    cannot be read safely or does not fit ``module_cls``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return module_cls.load_from_checkpoint(path, map_location=map_location, weights_only=True, **kwargs)
    except Exception as err:  # unreadable, hostile, or another module's checkpoint
        raise CheckpointError(f"cannot load checkpoint {path} as {module_cls.__name__}: {describe_load_error(err)}"
                              ) from None


def read_state_dict(path_or_sd: StateDictOrPath) -> Tuple[Dict[str, torch.Tensor], str]:
    """Read a state dict (``torch.load(weights_only=True)`` for paths) -> (state dict, source name).

    Unwraps ``{'state_dict': ...}`` (Lightning and the qijiezhao release use it) and checks
    that every value is a tensor.
    """
    if isinstance(path_or_sd, Mapping):
        obj, source = path_or_sd, "<state dict>"
    else:
        source = os.fspath(path_or_sd)
        if not os.path.isfile(source):
            raise CheckpointError(f"checkpoint file not found: {source}")
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and weights_only errors all mean "unreadable"
            raise CheckpointError(f"could not read checkpoint {source}: {describe_load_error(err)}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (mapping of name -> tensor), got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: key {key!r} holds a {type(value).__name__}, not a tensor")
    return dict(obj), source


def _strip_module(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove a DataParallel ``module.`` prefix carried by every key."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _fit(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A 4-D conv kernel (O, I, kH, kW) becomes (O, I, 1, kH, kW) where the model wants 5-D."""
    if tensor.dim() == 4 and len(shape) == 5 and shape[2] == 1:
        return tensor.unsqueeze(2)
    return tensor


# ----------------------------------------------------------------------------- assigning


def _assign(
    model: nn.Module,
    source: str,
    sd: Mapping[str, torch.Tensor],
    rename: Callable[[str], str],
    report: LoadReport,
    skip_model_keys: Sequence[str] = (),
    skip_source: Callable[[str], bool] = lambda key: False,
    strict: bool = True,
) -> LoadReport:
    """Copy ``sd`` into ``model`` after renaming source keys to model keys; all checks first."""
    target = model.state_dict()
    mapped: "OrderedDict[str, Tuple[str, torch.Tensor]]" = OrderedDict()
    unexpected = []
    for src_key, tensor in sd.items():
        if skip_source(src_key):
            report.dropped.append(src_key)
            continue
        key = rename(src_key)
        if key in mapped:
            raise CheckpointError(f"{source}: keys {mapped[key][0]!r} and {src_key!r} both map to model key {key!r}")
        if key not in target:
            unexpected.append(src_key if key == src_key else f"{src_key} (-> {key})")
            continue
        mapped[key] = (src_key, tensor)
    skip = set(skip_model_keys)
    missing = [k for k in target if k not in mapped and k not in skip]
    # Old files lack BN's num_batches_tracked; like nn.BatchNorm we tolerate that.
    missing_hard = [k for k in missing if not k.endswith("num_batches_tracked")]
    if strict and unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} keys the model does not have, first {unexpected[0]!r} "
            f"(all: {_preview(unexpected)})"
        )
    if strict and missing_hard:
        raise CheckpointError(
            f"{source}: {len(missing_hard)} model keys missing from the checkpoint, first {missing_hard[0]!r} "
            f"(all: {_preview(missing_hard)})"
        )
    for key, (src_key, tensor) in mapped.items():
        tensor = _fit(tensor, target[key].shape)
        if tensor.shape != target[key].shape:
            hint = " (pass drop_classifier=True to fine-tune on another number of classes)" if key in _CLASSIFIER else ""
            raise CheckpointError(
                f"{source}: shape mismatch at key {src_key!r}: checkpoint {tuple(tensor.shape)}, "
                f"model {key!r} expects {tuple(target[key].shape)}{hint}"
            )
    with torch.no_grad():
        for key, (src_key, tensor) in mapped.items():
            target[key].copy_(_fit(tensor, target[key].shape))
            report.loaded.append(key)
    report.dropped.extend(unexpected)
    initialized = set(report.initialized)
    report.kept.extend(k for k in target if k not in mapped and k not in initialized)
    return report


def load_checkpoint(
    model: nn.Module,
    path_or_sd: StateDictOrPath,
    strict: bool = True,
    drop_classifier: bool = False,
    prefix: Optional[str] = None,
) -> LoadReport:
    """Load weights saved in our own key layout (``model.state_dict()`` or a Lightning ``.ckpt``).

    ``prefix`` is the part to remove from every key (e.g. ``"model."`` in a LightningModule
    checkpoint); by default it is detected: the prefix whose stripped keys match most model
    keys. Keys outside the prefix (other parts of a Lightning system) are reported as dropped.
    ``strict=False`` allows missing and unexpected keys, never shape mismatches.
    """
    sd, source = read_state_dict(path_or_sd)
    model_keys = set(model.state_dict())
    if prefix is None:
        heads = {".".join(k.split(".")[:n]) + "." for k in sd for n in (1, 2) if k.count(".") > n}
        candidates = sorted({""} | heads, key=lambda p: (len(p), p))
        prefix = max(candidates, key=lambda p: sum(k[len(p):] in model_keys for k in sd if k.startswith(p)))
    report = LoadReport(source)
    skip_model = _CLASSIFIER if drop_classifier else ()
    return _assign(
        model, source, sd, lambda k: k[len(prefix):], report, skip_model_keys=skip_model,
        skip_source=lambda k: not k.startswith(prefix) or (drop_classifier and k[len(prefix):] in _CLASSIFIER),
        strict=strict,
    )


# ----------------------------------------------------------------------------- ImageNet inflation

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
