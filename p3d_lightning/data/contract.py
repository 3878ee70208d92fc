"""The input contract: what a clip looks like to the network (modality, normalisation, channel
order, mean/std), resolved from the config and the architecture's ``ModelCfg``, and checked
against the weights about to be loaded.

``VideoDataModule`` resolves it in ``setup`` (``dm.input_contract``) and saves it in every
checkpoint; a restored checkpoint or ``model.pretrained`` trained on other clips is refused,
naming both sides.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .transforms import check_normalization, default_norm_stats

__all__ = ["InputContract", "resolve_input_contract", "contract_conflicts", "check_pretrained_contract",
           "stored_contract", "PRETRAINED_NORMALIZATION", "MODALITIES"]

MODALITIES = ("rgb", "flow")

#: What the weights of each ``model.pretrained_format`` were trained on. "lightning" checkpoints
#: carry their own contract (``VideoDataModule.state_dict``), compared field by field.
PRETRAINED_NORMALIZATION = {
    "imagenet": "imagenet",  # torchvision ImageNet ResNets: RGB in [0, 1], mean/std
    "qijiezhao": "caffe",  # the released P3D-199 Caffe weights: 0-255 minus [104, 117, 123] / 128 (flow)
}


@dataclass(frozen=True)
class InputContract:
    """What a clip looks like to the network: modality, normalisation, channel order, mean/std.

    ``source`` names where each field came from: ``data`` (the config set it),
    ``ModelCfg(<arch>)`` (the architecture table, ``models/zoo.py``) or ``default``.
    """

    modality: str
    in_channels: int
    normalization: str
    channel_order: str
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    arch: Optional[str] = None
    source: Tuple[Tuple[str, str], ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        """Plain lists and dicts, as saved in a checkpoint (``VideoDataModule.state_dict``)."""
        d = asdict(self)
        d["mean"], d["std"], d["source"] = list(self.mean), list(self.std), dict(self.source)
        return d

    def describe(self) -> str:
        """One line: each field with where it came from."""
        src = dict(self.source)
        return ", ".join(f"{k}={getattr(self, k)!r} ({src.get(k, 'default')})"
                         for k in ("modality", "normalization", "channel_order", "mean", "std"))


def resolve_input_contract(
    arch: Optional[str] = None,
    in_channels: Optional[int] = None,
    normalization: Optional[str] = None,
    channel_order: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    modality: Optional[str] = None,
) -> InputContract:
    """The input contract: each field from the config if set, else the architecture's ``ModelCfg``.

    ``in_channels`` is the built network's (3 RGB, 2 flow; default: the ModelCfg's, else 3);
    ``modality`` ("rgb" / "flow"), if set, must agree with it. ``ModelCfg`` values are used
    only where they fit: its channel order and mean/std only for its own normalisation and
    channel count (an overridden ``channel_order`` gets that normalisation's means reordered).
    Raises ``ValueError`` naming the option on a contradiction.
    """
    from p3d_lightning.models.zoo import get_model_cfg

    cfg = get_model_cfg(arch) if arch else None
    src: Dict[str, str] = {}
    tag = f"ModelCfg({arch})"
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"data.modality must be one of {MODALITIES}, got {modality!r}")
    if in_channels is None:
        if modality is not None:
            in_channels, src["modality"] = (2 if modality == "flow" else 3), "data"
        else:
            in_channels = cfg.in_channels if cfg else 3
            src["modality"] = tag if cfg else "default"
    else:
        src["modality"] = "data" if modality is not None else "model.in_channels"
    if cfg is not None and cfg.in_channels == 2 and in_channels != 2:
        raise ValueError(f"model.arch={arch!r} is an optical-flow model (ModelCfg in_channels=2) but the network "
                         f"has {in_channels} input channels; set model.in_channels: 2")
    derived = "flow" if in_channels == 2 else "rgb"
    if modality is not None and modality != derived:
        raise ValueError(f"data.modality={modality!r} contradicts the network's {in_channels} input channels "
                         f"(model.in_channels={in_channels} means {derived!r}); set them to agree")
    if normalization is not None:
        src["normalization"] = "data"
    elif cfg is not None:
        normalization, src["normalization"] = cfg.normalization, tag
    else:
        normalization, src["normalization"] = "imagenet", "default"
    check_normalization(normalization, channel_order, in_channels)
    cfg_fits = cfg is not None and cfg.normalization == normalization and cfg.in_channels == in_channels
    if channel_order is not None:
        src["channel_order"] = "data"
    elif cfg_fits:
        channel_order, src["channel_order"] = cfg.channel_order, tag
    order, mean0, std0 = default_norm_stats(normalization, channel_order, in_channels)
    src.setdefault("channel_order", "default")
    use_cfg_stats = cfg_fits and cfg.channel_order == order
    for name, value, fallback, cfg_value in (("mean", mean, mean0, cfg and cfg.mean), ("std", std, std0, cfg and cfg.std)):
        if value is not None:
            src[name] = "data"
        elif use_cfg_stats:
            src[name] = tag
        else:
            src[name] = "default"
    mean = tuple(float(v) for v in (mean if mean is not None else (cfg.mean if use_cfg_stats else mean0)))
    std = tuple(float(v) for v in (std if std is not None else (cfg.std if use_cfg_stats else std0)))
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"data.mean {mean} / data.std {std} need {in_channels} values ({derived} clips, "
                         f"channel order {order})")
    return InputContract(derived, in_channels, normalization, order, mean, std, arch,
                         tuple(sorted(src.items())))


def stored_contract(checkpoint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The input contract saved in a Lightning checkpoint dict (ours, or an older run's hparams)."""
    state = checkpoint.get("VideoDataModule")
    if isinstance(state, dict) and isinstance(state.get("input_contract"), dict):
        return state["input_contract"]
    hp = checkpoint.get("datamodule_hyper_parameters")
    if isinstance(hp, dict) and hp.get("normalization"):
        return {"normalization": hp["normalization"]}
    return None


def contract_conflicts(stored: Dict[str, Any], current: InputContract) -> List[str]:
    """Fields on which a stored contract (dict) and ``current`` disagree, as ``'name: stored vs current'``."""
    out = []
    for key in ("modality", "normalization", "channel_order", "mean", "std"):
        if key not in stored or stored[key] is None:
            continue
        a, b = stored[key], getattr(current, key)
        same = (len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b))
                if key in ("mean", "std") else a == b)
        if not same:
            out.append(f"{key}: {a!r} vs {b!r}")
    return out


def check_pretrained_contract(pretrained: Optional[str], pretrained_format: Optional[str],
                              contract: InputContract) -> None:
    """Raise ``ValueError`` naming both when the weights to load expect another normalisation.

    ``imagenet`` weights expect ``normalization='imagenet'`` and ``qijiezhao`` (the released
    P3D-199) ``'caffe'``; a ``lightning`` checkpoint is compared with the contract saved in it.
    """
    if not pretrained or not pretrained_format:
        return
    expected = PRETRAINED_NORMALIZATION.get(pretrained_format)
    if expected is not None:
        if contract.normalization != expected:
            raise ValueError(
                f"model.pretrained_format={pretrained_format!r} (model.pretrained={pretrained}) was trained with "
                f"normalization={expected!r}, but the data are normalised with "
                f"data.normalization={contract.normalization!r} ({dict(contract.source)['normalization']}); "
                f"set data.normalization: {expected} (or leave it unset to take it from the architecture's "
                "ModelCfg)")
        return
    if pretrained_format == "lightning" and os.path.isfile(pretrained):
        from p3d_lightning.models.weights import read_torch_file

        ckpt = read_torch_file(pretrained, "Lightning checkpoint")
        stored = stored_contract(ckpt) if isinstance(ckpt, dict) else None
        conflicts = contract_conflicts(stored, contract) if stored else []
        if conflicts:
            raise ValueError(f"model.pretrained={pretrained} (pretrained_format='lightning') was trained on clips "
                             f"with another input contract than data.* gives now ({'; '.join(conflicts)}; "
                             f"checkpoint vs data); set data.normalization/channel_order/mean/std to match")
