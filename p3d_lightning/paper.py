"""The paper's published numbers, typed once, in one place.

Qiu, Yao, Mei, "Learning Spatio-Temporal Representation with Pseudo-3D Residual Networks",
ICCV 2017 (arXiv 1711.10305). Everything here is *the paper's* result, never ours: tables,
notebooks and the ablation runner label these columns as the paper's and read our own
numbers from the files our runs write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

__all__ = [
    "PaperTable1Row",
    "TABLE1",
    "TABLE1_ARCH",
    "TABLE2",
    "PAPER_PARAM_COUNTS",
    "PAPER_SIZES_MB",
    "PAPER_DEPTHS",
    "C3D_SIZE_MB",
    "TRANSFER_RESULTS",
    "PAPER_SPEED_NOTE",
]


@dataclass(frozen=True)
class PaperTable1Row:
    """One row of the paper's Table 1 (UCF101 split 1, fine-tuned from ImageNet ResNet-50)."""

    method: str
    size_mb: float
    speed: float  # clips/s for P3D variants, frames/s for the frame-level ResNet-50
    speed_unit: str  # "clip/s" or "frame/s"
    top1: float  # video-level top-1 accuracy, percent


#: Table 1 keyed by our architecture names (see ``p3d_lightning.models.list_models``).
TABLE1: Dict[str, PaperTable1Row] = {
    "resnet50": PaperTable1Row("ResNet-50", 92.0, 15.0, "frame/s", 80.8),
    "p3d_a": PaperTable1Row("P3D-A ResNet", 98.0, 9.0, "clip/s", 83.7),
    "p3d_b": PaperTable1Row("P3D-B ResNet", 98.0, 8.8, "clip/s", 82.8),
    "p3d_c": PaperTable1Row("P3D-C ResNet", 98.0, 8.6, "clip/s", 83.0),
    "p3d": PaperTable1Row("P3D ResNet", 98.0, 8.8, "clip/s", 84.2),
}

#: The order of Table 1's rows, also the default order of the ablation runner.
TABLE1_ARCH = tuple(TABLE1)

PAPER_SPEED_NOTE = (
    "paper: one GPU of 2017 (reportedly a K40, not confirmed); a clip is 16 frames; "
    "ResNet-50 speed is in frames/s"
)

#: Table 2, Sports-1M (487 classes): clip hit@1, video hit@1, video hit@5 (percent).
TABLE2: Dict[str, Dict[str, Optional[float]]] = {
    "Deep Video (single frame)": {"clip_hit1": 41.1, "video_hit1": 59.3, "video_hit5": 77.7},
    "Deep Video (slow fusion)": {"clip_hit1": 41.9, "video_hit1": 60.9, "video_hit5": 80.2},
    "Convolutional Pooling (120 frames)": {"clip_hit1": 70.8, "video_hit1": 72.3, "video_hit5": 90.8},
    "C3D": {"clip_hit1": 44.9, "video_hit1": 60.0, "video_hit5": 84.4},
    "C3D (I380K pre-train)": {"clip_hit1": 46.1, "video_hit1": 61.1, "video_hit5": 85.2},
    "ResNet-152": {"clip_hit1": 46.5, "video_hit1": 64.6, "video_hit5": 86.4},
    "P3D ResNet-199": {"clip_hit1": 47.9, "video_hit1": 66.4, "video_hit5": 87.4},
}

#: Learnable fp32 parameters of the official architectures (BN running stats excluded),
#: keyed by (architecture, num_classes). Our models must match these exactly.
PAPER_PARAM_COUNTS: Dict[tuple, int] = {
    ("resnet50", 101): 23_714_981,
    ("resnet50", 400): 24_327_632,
    ("p3d", 101): 25_132_581,
    ("p3d", 400): 25_745_232,
    ("p3d", 487): 25_923_495,
    ("p3d131", 101): 47_475_749,
    ("p3d131", 400): 48_088_400,
    ("p3d199", 101): 65_879_589,
    ("p3d199", 400): 66_492_240,
    ("p3d199", 487): 66_670_503,
}

#: Model sizes stated in the paper (MB) and the layer count of its deepest model.
PAPER_SIZES_MB: Dict[str, float] = {"resnet50": 92.0, "p3d": 98.0}
PAPER_DEPTHS: Dict[str, int] = {"resnet50": 50, "p3d": 63, "p3d131": 131, "p3d199": 199}
#: C3D's published model size, quoted by the paper for comparison (MB).
C3D_SIZE_MB = 321.0

#: Transfer results with P3D-199 Sports-1M features + linear SVM (percent).
TRANSFER_RESULTS: Dict[str, Dict[str, float]] = {
    "UCF101 (3 splits)": {"P3D": 88.6, "C3D": 82.3, "ResNet-152": 83.5},
    "UCF101 (3 splits) + IDT": {"P3D": 93.7},
    "ActivityNet v1.3 top-1": {"P3D": 75.12, "ResNet-152": 71.43},
    "ASLAN accuracy": {"P3D": 80.8, "C3D": 78.3},
    "Dynamic Scene": {"P3D": 94.6, "C3D": 87.7, "ResNet-152": 93.6},
    "YUPENN": {"P3D": 99.5, "C3D": 98.1, "ResNet-152": 99.2},
}
