"""A deterministic synthetic detection dataset, written as COCO JSON + PNG images.

Every image is drawn from its own seeded generator, so the set is the same on every
machine. Objects are filled shapes of four classes (circle, square, triangle, cross) in
random colours on a textured background with clutter (lines, dots, hollow outlines that
are not objects). Sizes run from tiny (6 px) to large (≈55% of the image side), drawn
log-uniformly; counts vary per image; objects may overlap up to an IoU of 0.35 and later
ones occlude earlier ones, but an object whose visible part falls under 40% of its own
area is removed from the image's annotations (it is then clutter). Boxes are the tight
boxes of the visible pixels' full shape, in COCO [x, y, w, h] pixels.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgedet.io.atomic import atomic_output, write_json_atomic

CLASSES = ("circle", "square", "triangle", "cross")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SyntheticDetConfig:
    image_size: int = 192
    num_train: int = 2000
    num_val: int = 200
    min_objects: int = 1
    max_objects: int = 7
    min_size: float = 6.0
    max_size_frac: float = 0.55
    max_overlap_iou: float = 0.35
    min_visible: float = 0.4
    clutter: int = 6
    seed: int = 0


def _shape_mask(kind: str, box: tuple[float, float, float, float], size: int, rng: np.random.Generator):
    """Boolean mask of one filled shape inside its box (x0, y0, x1, y1)."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    x0, y0, x1, y1 = box
    if kind == "circle":
        d.ellipse(box, fill=255)
    elif kind == "square":
        d.rectangle(box, fill=255)
    elif kind == "triangle":
        apex = x0 + (x1 - x0) * rng.uniform(0.2, 0.8)
        d.polygon([(apex, y0), (x1, y1), (x0, y1)], fill=255)
    elif kind == "cross":
        tw, th = (x1 - x0) * 0.3, (y1 - y0) * 0.3
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        d.rectangle((cx - tw / 2, y0, cx + tw / 2, y1), fill=255)
        d.rectangle((x0, cy - th / 2, x1, cy + th / 2), fill=255)
    return np.asarray(m) > 127


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(40, 200, size=3)
    gy, gx = np.mgrid[0:size, 0:size] / size
    grad = rng.uniform(-40, 40, 3) * gx[..., None] + rng.uniform(-40, 40, 3) * gy[..., None]
    noise = rng.normal(0, 8, size=(size, size, 3))
    return np.clip(base[None, None] + grad + noise, 0, 255)


def _clutter(img: Image.Image, n: int, rng: np.random.Generator) -> None:
    d = ImageDraw.Draw(img)
    s = img.size[0]
    for _ in range(n):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            pts = [tuple(rng.uniform(0, s, 2)) for _ in range(2)]
            d.line(pts, fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 1:
            x, y = rng.uniform(0, s, 2)
            r = rng.uniform(1, 2.5)
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            x, y = rng.uniform(0, s * 0.8, 2)
            w, h = rng.uniform(8, s * 0.3, 2)
            d.rectangle((x, y, x + w, y + h), outline=colour, width=1)


def render_image(index: int, cfg: SyntheticDetConfig, split_seed: int) -> tuple[Image.Image, list[dict]]:
    """Image `index` of a split and its annotations (category ids are 1-based)."""
    rng = np.random.default_rng([cfg.seed, split_seed, index])
    s = cfg.image_size
    canvas = _background(s, rng)
    img = Image.fromarray(canvas.astype(np.uint8))
    _clutter(img, int(rng.integers(0, cfg.clutter + 1)), rng)
    canvas = np.asarray(img).astype(np.float64)
    owner = np.full((s, s), -1, dtype=np.int64)  # which object is on top of each pixel
    objs: list[dict] = []
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    for _ in range(n):
        for _attempt in range(20):
            side = float(np.exp(rng.uniform(np.log(cfg.min_size), np.log(cfg.max_size_frac * s))))
            aspect = float(np.exp(rng.uniform(-0.35, 0.35)))
            w, h = min(side * aspect, s - 2.0), min(side / aspect, s - 2.0)
            x0, y0 = rng.uniform(0, s - w), rng.uniform(0, s - h)
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, o["box"]) <= cfg.max_overlap_iou for o in objs):
                break
        else:
            continue
        kind = CLASSES[int(rng.integers(0, len(CLASSES)))]
        mask = _shape_mask(kind, box, s, rng)
        if mask.sum() < 4:
            continue
        colour = rng.uniform(0, 255, 3)
        while np.abs(colour - canvas[mask].mean(0)).sum() < 120:  # keep objects visible
            colour = rng.uniform(0, 255, 3)
        canvas[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
        owner[mask] = len(objs)
        objs.append({"box": box, "kind": kind, "area": int(mask.sum()), "mask": mask})
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    anns = []
    for i, o in enumerate(objs):
        visible = int((owner == i).sum())
        if visible < cfg.min_visible * o["area"]:
            continue
        ys, xs = np.nonzero(o["mask"])
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        anns.append({"category_id": CLASSES.index(o["kind"]) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                     "area": float(visible), "iscrowd": 0})
    return img, anns


def write_split(root: Path, split: str, count: int, cfg: SyntheticDetConfig, split_seed: int) -> Path:
    """Write `root/<split>/*.png` and `root/annotations/<split>.json`; returns the JSON path."""
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img, anns = render_image(i, cfg, split_seed)
        name = f"{i:06d}.png"
        with atomic_output(img_dir / name) as tmp:
            img.save(tmp, format="PNG")
        images.append({"id": i + 1, "file_name": name, "width": cfg.image_size, "height": cfg.image_size})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **a})
    doc = {
        "info": {"description": "edgedet synthetic detection set", "schema_version": SCHEMA_VERSION,
                 "config": asdict(cfg), "split": split},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)],
    }
    ann_path = root / "annotations" / f"{split}.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(ann_path, doc)
    return ann_path


def default_root(cfg: SyntheticDetConfig) -> Path:
    """Cache folder for a configuration ($EDGEDET_CACHE or ~/.cache/edgedet)."""
    base = Path(os.environ.get("EDGEDET_CACHE", Path.home() / ".cache" / "edgedet"))
    key = f"s{cfg.image_size}-n{cfg.num_train}-{cfg.num_val}-seed{cfg.seed}"
    return base / f"synthetic-det-v{SCHEMA_VERSION}-{key}"


def ensure_synthetic_coco(cfg: SyntheticDetConfig | None = None,
                          root: str | Path | None = None) -> dict[str, Path]:
    """Generate the set once (reused when its annotation files already match `cfg`).
    Returns {"train_ann", "train_images", "val_ann", "val_images"}."""
    cfg = cfg or SyntheticDetConfig()
    root = Path(root) if root is not None else default_root(cfg)
    out = {}
    for split, count, split_seed in (("train", cfg.num_train, 1), ("val", cfg.num_val, 2)):
        ann = root / "annotations" / f"{split}.json"
        if not _matches(ann, cfg, count):
            write_split(root, split, count, cfg, split_seed)
        out[f"{split}_ann"], out[f"{split}_images"] = ann, root / split
    return out


def _matches(ann: Path, cfg: SyntheticDetConfig, count: int) -> bool:
    try:
        doc = json.loads(ann.read_text())
    except (OSError, ValueError):
        return False
    info = doc.get("info", {})
    return (info.get("schema_version") == SCHEMA_VERSION and info.get("config") == asdict(cfg)
            and len(doc.get("images", [])) == count
            and all((ann.parent.parent / info.get("split", "") / im["file_name"]).exists()
                    for im in doc["images"][-1:]))
