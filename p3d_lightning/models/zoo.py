"""The architecture table: every model is one line of data, built by :class:`P3DResNet`.

    >>> from p3d_lightning.models import create_model, list_models
    >>> model = create_model("p3d", num_classes=101)      # mixed P3D ResNet (P3D-63)
    >>> tiny = create_model("p3d_tiny", num_classes=5)    # test-size net for CPU runs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Tuple

from .p3d_resnet import P3DResNet

__all__ = ["ARCHS", "ArchName", "ModelCfg", "MODEL_CFGS", "create_model", "list_models", "get_model_cfg"]

_R50, _R101, _R152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
_P3D = dict(stages_2d=(False, False, False, True), temporal_pool=(True, True, True, False), stem_temporal_pool=True)
_FRAME = dict(stages_2d=(True, True, True, True), temporal_pool=(False,) * 4, stem_temporal_pool=False)
_MIXED, _TINY = ("A", "B", "C"), dict(depths=(1, 1, 1, 1), width_mult=0.125)

#: name -> P3DResNet keyword arguments (defaults that ``create_model`` overrides accept).
ARCHS: Dict[str, Dict[str, Any]] = {
    "resnet50": dict(depths=_R50, **_FRAME, num_classes=101, dropout=0.9),  # Table 1 frame baseline
    "p3d_a": dict(depths=_R50, unit_pattern=("A",), **_P3D, num_classes=101, dropout=0.9),
    "p3d_b": dict(depths=_R50, unit_pattern=("B",), **_P3D, num_classes=101, dropout=0.9),
    "p3d_c": dict(depths=_R50, unit_pattern=("C",), **_P3D, num_classes=101, dropout=0.9),
    "p3d": dict(depths=_R50, unit_pattern=_MIXED, **_P3D, num_classes=101, dropout=0.9),  # P3D-63
    "p3d131": dict(depths=_R101, unit_pattern=_MIXED, **_P3D, num_classes=101, dropout=0.5),
    "p3d199": dict(depths=_R152, unit_pattern=_MIXED, **_P3D, num_classes=400, dropout=0.5),
    "p3d199_flow": dict(depths=_R152, unit_pattern=_MIXED, **_P3D, in_channels=2, num_classes=400, dropout=0.7),
    "p3d_tiny": dict(**_TINY, unit_pattern=_MIXED, **_P3D, num_classes=10, dropout=0.5),
    "resnet_tiny": dict(**_TINY, **_FRAME, num_classes=10, dropout=0.5),
}

#: The architecture names as a type: a config's ``model.arch`` is checked against it when the
#: config is read (a typo is refused naming the option and listing the names).
ArchName = Literal[tuple(ARCHS)]

IMAGENET_MEAN: Tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCfg:
    """What a model expects from the data: clip shape, normalisation, classifier.

    ``VideoDataModule`` takes ``normalization``, ``channel_order``, ``mean`` and ``std`` from
    here unless its config sets them (``data.normalization`` etc.): "imagenet" means pixels in
    [0, 1], then ``(x - mean) / std``; "caffe" (the released P3D-199 weights) means 0-255
    pixels minus ``mean`` (std 1), channels in ``channel_order`` ("BGR" is inferred from the
    Caffe convention, not confirmed: see docs/models.md), flow "xy" minus 128. ``mean``/``std``
    are listed in ``channel_order``.
    """

    name: str
    clip_len: int = 16
    crop_size: int = 160
    num_classes: int = 101
    in_channels: int = 3
    normalization: str = "imagenet"
    channel_order: str = "RGB"
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    dropout: float = 0.9
    classifier: str = "fc"
    num_features: int = 2048


_CAFFE_RGB = dict(normalization="caffe", channel_order="BGR", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
_CAFFE_FLOW = dict(normalization="caffe", channel_order="xy", mean=(128.0, 128.0), std=(1.0, 1.0))

#: name -> data-side metadata; tests check each against the built model.
MODEL_CFGS: Dict[str, ModelCfg] = {
    "resnet50": ModelCfg("resnet50", clip_len=1, crop_size=224),
    "p3d_a": ModelCfg("p3d_a"),
    "p3d_b": ModelCfg("p3d_b"),
    "p3d_c": ModelCfg("p3d_c"),
    "p3d": ModelCfg("p3d"),
    "p3d131": ModelCfg("p3d131", dropout=0.5),
    "p3d199": ModelCfg("p3d199", num_classes=400, dropout=0.5, **_CAFFE_RGB),
    "p3d199_flow": ModelCfg("p3d199_flow", num_classes=400, in_channels=2, dropout=0.7, **_CAFFE_FLOW),
    "p3d_tiny": ModelCfg("p3d_tiny", crop_size=32, num_classes=10, dropout=0.5, num_features=256),
    "resnet_tiny": ModelCfg("resnet_tiny", clip_len=1, crop_size=32, num_classes=10, dropout=0.5, num_features=256),
}


def list_models() -> List[str]:
    """Names accepted by :func:`create_model`, in table order."""
    return list(ARCHS)


def _check_name(name: str) -> None:
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(ARCHS)}")


def get_model_cfg(name: str) -> ModelCfg:
    """Data-side defaults of architecture ``name`` (clip_len, crop_size, mean/std, ...)."""
    _check_name(name)
    return MODEL_CFGS[name]


def create_model(name: str, **overrides: Any) -> P3DResNet:
    """Build architecture ``name`` from the table; ``overrides`` are P3DResNet kwargs
    (num_classes, dropout, width_mult, in_channels, ...). No weights are loaded: see
    ``p3d_lightning.models.weights``.
    """
    _check_name(name)
    kwargs = dict(ARCHS[name])
    kwargs.update(overrides)
    try:
        return P3DResNet(**kwargs)
    except TypeError as err:
        raise TypeError(f"create_model({name!r}): bad override in {sorted(overrides)}: {err}") from err
