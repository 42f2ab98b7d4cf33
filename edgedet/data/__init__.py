"""Datasets: procedural synthetic data and loaders for real data.

`make_classification_data(spec, img_size)` turns a `--data` value ("synthetic" or a
folder of class sub-folders) into train/val datasets and the number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from edgedet.data.imagefolder import image_folder_splits
from edgedet.data.synthetic import SyntheticShapes
from edgedet.errors import EdgedetError


@dataclass
class ClassificationData:
    train: Dataset
    val: Dataset
    num_classes: int
    classes: list[str]
    source: str  # "synthetic" or the resolved folder path


def make_classification_data(spec: str, img_size: int, seed: int = 0, train_size: int = 5000,
                             val_size: int = 1000, val_fraction: float = 0.1) -> ClassificationData:
    """Train/val datasets for `--data SPEC`; `train_size`/`val_size` apply to synthetic data.

    Synthetic data: train = indices [0, train_size), val = the next val_size indices.
    """
    if img_size <= 0:
        raise EdgedetError(f"image size must be positive, got {img_size}")
    if spec == "synthetic":
        if train_size <= 0 or val_size <= 0:
            raise EdgedetError("synthetic train and val sizes must be positive")
        train = SyntheticShapes(train_size, img_size, start=0, seed=seed)
        val = SyntheticShapes(val_size, img_size, start=train_size, seed=seed)
        return ClassificationData(train, val, len(train.classes), train.classes, "synthetic")
    if not spec or spec.startswith("-"):
        raise EdgedetError(f"unknown data spec {spec!r}: use 'synthetic' or a folder of class sub-folders")
    path = Path(spec).expanduser()
    if not path.exists():
        raise EdgedetError(f"unknown data spec {spec!r}: not 'synthetic' and no such folder")
    train, val, classes = image_folder_splits(path, img_size, val_fraction=val_fraction, seed=seed)
    return ClassificationData(train, val, len(classes), classes, str(path.resolve()))
