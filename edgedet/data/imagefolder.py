"""Real images in class sub-folders (`--data PATH`): PATH/<class>/<image>, as ImageFolder.

A folder with `train/` and `val/` sub-folders is used as given; otherwise a deterministic
share of every class (by a seeded shuffle of its sorted file list) becomes the validation
split. Images are resized (shorter side), centre-cropped to a square and normalised with
the usual ImageNet statistics.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgedet.errors import EdgedetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scan_classes(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and (file, label) pairs of an ImageFolder tree; errors say what is wrong."""
    if not root.exists():
        raise EdgedetError(f"data folder not found: {root}")
    if not root.is_dir():
        raise EdgedetError(f"--data must be 'synthetic' or a folder of class sub-folders, got file {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise EdgedetError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        samples.extend((p, label) for p in files)
    if not samples:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise EdgedetError(f"{root}: no image files in its class sub-folders (looked for {exts})")
    return classes, samples


class ImageFolder(Dataset):
    """(file, label) samples loaded with PIL, resized, centre-cropped and normalised."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], size: int):
        self.samples, self.classes, self.size = samples, classes, size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = _resize_center_crop(im.convert("RGB"), self.size)
        except (OSError, UnidentifiedImageError) as e:
            raise EdgedetError(f"cannot read image {path}: {e}") from None
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, label


def _resize_center_crop(img, size: int):
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def image_folder_splits(root: str | Path, size: int, val_fraction: float = 0.1,
                        seed: int = 0) -> tuple[ImageFolder, ImageFolder, list[str]]:
    """Train and validation datasets of a folder, and the class names."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, train = scan_classes(root / "train")
        val_classes, val = scan_classes(root / "val")
        if val_classes != classes:
            raise EdgedetError(f"{root}: train/ and val/ have different class folders")
        return ImageFolder(train, classes, size), ImageFolder(val, classes, size), classes
    classes, samples = scan_classes(root)
    train, val = [], []
    for label in range(len(classes)):
        files = [s for s in samples if s[1] == label]
        random.Random(f"{seed}:{label}").shuffle(files)
        n_val = int(round(len(files) * val_fraction)) if len(files) > 1 else 0
        n_val = min(max(n_val, 1 if len(files) > 1 else 0), len(files) - 1)
        val.extend(files[:n_val])
        train.extend(files[n_val:])
    if not val:
        raise EdgedetError(f"{root}: too few images for a validation split (need ≥ 2 in some class)")
    return ImageFolder(train, classes, size), ImageFolder(val, classes, size), classes
