"""Weight loading, strict and explicit: nothing here runs inside a model constructor.

* :func:`load_checkpoint` -- our own key layout (``model.state_dict()``, a Lightning ``.ckpt``).
* :mod:`p3d_lightning.models.converters` -- other codebases' key layouts: an ImageNet 2D
  ResNet in torchvision's layout inflated into any P3D variant, and the released P3D-199
  weights in the qijiezhao/pseudo-3d-pytorch layout (re-exported here).

Every loader reads files with ``torch.load(weights_only=True)``, refuses shape mismatches,
missing and unexpected keys (the classifier may be dropped only when asked), and returns a
:class:`LoadReport` saying what it loaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "LoadReport",
    "describe_load_error",
    "read_torch_file",
    "load_module_checkpoint",
    "read_state_dict",
    "load_checkpoint",
]

StateDictOrPath = Union[str, os.PathLike, Mapping[str, torch.Tensor]]
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

