"""P3D ResNet models: units, the trunk builder, the architecture table, weights, cost.

    >>> from p3d_lightning.models import create_model, inflate_imagenet_resnet
    >>> model = create_model("p3d", num_classes=101)
    >>> report = inflate_imagenet_resnet(model, "resnet50-0676ba61.pth", drop_classifier=True)
"""

from .complexity import count_params, model_complexity
from .p3d_resnet import P3DResNet, block_kinds, format_block_kinds
from .units import UNIT_KINDS, UNIT_TYPES, Bottleneck, Unit2D, UnitA, UnitB, UnitC, make_unit
from .converters import export_qijiezhao, inflate_imagenet_resnet, init_temporal, load_qijiezhao
from .weights import CheckpointError, LoadReport, load_checkpoint, read_state_dict
from .zoo import ARCHS, MODEL_CFGS, ArchName, ModelCfg, create_model, get_model_cfg, list_models

__all__ = [
    "P3DResNet", "block_kinds", "format_block_kinds",
    "UNIT_KINDS", "UNIT_TYPES", "Bottleneck", "UnitA", "UnitB", "UnitC", "Unit2D", "make_unit",
    "ARCHS", "ArchName", "MODEL_CFGS", "ModelCfg", "create_model", "get_model_cfg", "list_models",
    "count_params", "model_complexity",
    "CheckpointError", "LoadReport", "read_state_dict", "load_checkpoint", "inflate_imagenet_resnet",
    "init_temporal", "load_qijiezhao", "export_qijiezhao",
]
