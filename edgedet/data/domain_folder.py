"""A user's own domains on disk: ROOT/<domain>/<class>/<image> (one ImageFolder per domain),
and a folder of unlabelled images (any nesting) for test-time adaptation.

Images are resized and centre-cropped like `imagefolder.ImageFolder`; the normalisation is
the model's (a checkpoint records the mean/std it was trained with).
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgedet.data.imagefolder import IMAGE_EXTENSIONS, ImageFolder, scan_classes
from edgedet.errors import EdgedetError


def _normalised(ds: ImageFolder, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageFolder:
    ds.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    ds.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ds


def domain_folders(root: str | Path, size: int, mean: tuple[float, ...],
                   std: tuple[float, ...]) -> dict[str, ImageFolder]:
    """{domain: labelled dataset}; every domain must have the same class folders."""
    root = Path(root)
    if not root.is_dir():
        raise EdgedetError(f"domain folder not found: {root} (expected {root}/<domain>/<class>/<images>)")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise EdgedetError(f"{root} has no domain sub-folders (expected {root}/<domain>/<class>/<images>)")
    out, first = {}, None
    for name in names:
        classes, samples = scan_classes(root / name)
        if first is None:
            first = classes
        elif classes != first:
            raise EdgedetError(f"{root}/{name}: class folders {classes} differ from {first} of the other domains")
        out[name] = _normalised(ImageFolder(samples, classes, size), mean, std)
    return out


def unlabelled_images(folder: str | Path, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                      limit: int | None = None) -> torch.Tensor:
    """The first `limit` images (sorted paths, any nesting) of a folder as (N,3,size,size)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgedetError(f"--images {folder}: no such folder (or use synthetic:SHIFT)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise EdgedetError(f"--images {folder}: no image files (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    files = files[:limit] if limit else files
    ds = _normalised(ImageFolder([(p, 0) for p in files], ["unlabelled"], size), mean, std)
    return torch.stack([ds[i][0] for i in range(len(ds))])
