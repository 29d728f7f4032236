"""VOC readers, the synthetic VOC-layout generator, transforms and LightningDataModules.

Names are imported on first use, so ``python -m advcam_pl.data.synthetic`` and the numpy-only
readers do not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "voc": (
        "CLASS_NAMES", "CLASS_NAMES_BG", "IGNORE_INDEX", "NUM_CLASSES", "VOCDataError", "VOCLayoutError",
        "VOCReader",
    ),
    "synthetic": ("generate_dataset", "summary", "summarize"),
    "transforms": ("IMAGENET_MEAN", "IMAGENET_STD", "normalize", "scale_image"),
    "datamodules": (
        "ClassificationDataModule", "ClassificationDataset", "InferenceDataModule", "MultiScaleDataset",
        "SegmentationDataset", "ShardSampler", "collate_single",
    ),
    "semi": ("CCTTrainTransform", "SemiDataModule"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
