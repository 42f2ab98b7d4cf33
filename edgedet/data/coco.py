"""COCO-format detection data: validated loading, train-time augmentation, batching.

Batch format (what `collate` returns and every edgedet detector consumes):
  images  (B,3,H,W) float, ImageNet-normalised, zero-padded bottom/right to a common size
          (a multiple of `pad_to`, default 32, so stride-32 backbones align)
  masks   (B,H,W) bool, True on padding
  targets list of B dicts: "labels" int64 (T,) contiguous 0..K-1, "boxes" float (T,4)
          normalised cxcywh relative to the image's unpadded size after augmentation,
          "image_id" int, "orig_size" (h,w) int64 of the file, "size" (h,w) after resizing.

Bad input handling (each an EdgedetError naming the file and the fault, raised when the
dataset is built, never mid-training):
  - unreadable / malformed JSON, missing "images"/"annotations"/"categories", entries
    missing required fields, annotations pointing at unknown images or categories;
  - image files that do not exist (the first few missing are listed);
  - a dataset with no usable annotation at all when `require_annotations` (training).
Documented, not errors: images with an empty annotation list are kept as negatives;
`iscrowd` annotations are ignored for training targets (kept by pycocotools for eval);
degenerate boxes (w or h ≤ 0 or non-finite) and boxes entirely outside the image are
dropped, boxes partly outside are clipped; the counts are in `dataset.report`.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from edgedet.errors import EdgedetError
from edgedet.ops.boxes import box_xyxy_to_cxcywh

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class LoadReport:
    images: int = 0
    annotations: int = 0
    crowd_ignored: int = 0
    degenerate_dropped: int = 0
    clipped: int = 0
    images_without_annotations: int = 0


@dataclass
class Augment:
    """Train-time augmentation: horizontal flip, random resize of the longer side (within
    `scales` × base), DETR-style random crop with probability `crop_prob`."""

    flip: float = 0.5
    scales: tuple[float, ...] = (0.75, 0.875, 1.0, 1.125, 1.25)
    crop_prob: float = 0.3
    min_crop: float = 0.6
    extra: dict = field(default_factory=dict)


def _bad(path: Path, why: str) -> EdgedetError:
    return EdgedetError(f"{path}: {why}")


def load_coco_json(path: str | Path) -> dict:
    """Parse and validate a COCO detection JSON file (structure only)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise _bad(path, "annotation file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot read annotation file ({e})") from e
    except ValueError as e:
        raise _bad(path, f"malformed JSON ({e})") from e
    if not isinstance(doc, dict):
        raise _bad(path, "top level must be an object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise _bad(path, f"missing or non-list field '{key}'")
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise _bad(path, f"images[{i}] needs 'id' and 'file_name'")
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c:
            raise _bad(path, f"categories[{i}] needs 'id'")
    if not doc["categories"]:
        raise _bad(path, "no categories")
    img_ids = {im["id"] for im in doc["images"]}
    cat_ids = {c["id"] for c in doc["categories"]}
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict):
            raise _bad(path, f"annotations[{i}] is not an object")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise _bad(path, f"annotations[{i}].bbox must be [x, y, w, h] numbers")
        if a.get("image_id") not in img_ids:
            raise _bad(path, f"annotations[{i}].image_id {a.get('image_id')!r} is not in images")
        if a.get("category_id") not in cat_ids:
            raise _bad(path, f"annotations[{i}].category_id {a.get('category_id')!r} is not in categories")
    return doc


class CocoDetection(torch.utils.data.Dataset):
    """Images + targets of a COCO JSON file. `max_size` caps the longer side (the base
    scale); `augment` None = evaluation (resize only)."""

    def __init__(self, ann_file: str | Path, images_dir: str | Path, max_size: int = 256,
                 augment: Augment | None = None, require_annotations: bool = True):
        self.ann_file, self.images_dir = Path(ann_file), Path(images_dir)
        doc = load_coco_json(self.ann_file)
        if not self.images_dir.is_dir():
            raise _bad(self.images_dir, "images folder not found")
        self.categories = sorted(doc["categories"], key=lambda c: c["id"])
        self.cat_to_label = {c["id"]: i for i, c in enumerate(self.categories)}
        self.label_to_cat = [c["id"] for c in self.categories]
        self.class_names = [str(c.get("name", c["id"])) for c in self.categories]
        self.images = list(doc["images"])
        missing = [im["file_name"] for im in self.images if not (self.images_dir / im["file_name"]).is_file()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise _bad(self.images_dir,
                       f"{len(missing)} image file(s) missing: {', '.join(missing[:3])}{more}")
        self.max_size, self.augment = max_size, augment
        self.report = LoadReport(images=len(self.images))
        sizes = {im["id"]: (im.get("width"), im.get("height")) for im in self.images}
        per_image: dict = {im["id"]: [] for im in self.images}
        for a in doc["annotations"]:
            self.report.annotations += 1
            if a.get("iscrowd", 0):
                self.report.crowd_ignored += 1
                continue
            box = _clean_box(a["bbox"], *sizes[a["image_id"]], self.report)
            if box is not None:
                per_image[a["image_id"]].append((box, self.cat_to_label[a["category_id"]]))
        self.anns = [per_image[im["id"]] for im in self.images]
        self.report.images_without_annotations = sum(1 for a in self.anns if not a)
        if require_annotations and not any(self.anns):
            raise _bad(self.ann_file,
                       "no usable annotations (all empty, crowd or degenerate): nothing to train on")
        self.coco_doc = doc

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        path = self.images_dir / self.images[index]["file_name"]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except OSError as e:
            raise _bad(path, f"cannot decode image ({e})") from e

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        img = self.load_image(index)
        w, h = img.size
        anns = self.anns[index]
        boxes = torch.tensor([b for b, _ in anns], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([c for _, c in anns], dtype=torch.int64)
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        if self.augment is not None:
            x, boxes, labels = _augment(x, boxes, labels, self.augment, self.max_size)
        else:
            x, boxes = _resize(x, boxes, _target_scale(x.shape[1:], self.max_size))
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        hh, ww = x.shape[1:]
        norm = torch.tensor([ww, hh, ww, hh], dtype=torch.float32)
        target = {"labels": labels, "boxes": box_xyxy_to_cxcywh(boxes) / norm,
                  "image_id": int(self.images[index]["id"]),
                  "orig_size": torch.tensor([h, w]), "size": torch.tensor([hh, ww])}
        return x, target


def _clean_box(bbox, img_w, img_h, report: LoadReport):
    x, y, bw, bh = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, bw, bh)) or bw <= 0 or bh <= 0:
        report.degenerate_dropped += 1
        return None
    x1, y1, x2, y2 = x, y, x + bw, y + bh
    if img_w and img_h:
        cx1, cy1 = min(max(x1, 0.0), img_w), min(max(y1, 0.0), img_h)
        cx2, cy2 = min(max(x2, 0.0), img_w), min(max(y2, 0.0), img_h)
        if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
            report.degenerate_dropped += 1
            return None
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            report.clipped += 1
        x1, y1, x2, y2 = cx1, cy1, cx2, cy2
    return [x1, y1, x2, y2]


def _target_scale(hw, max_size: int) -> float:
    return max_size / max(hw)


def _resize(x: Tensor, boxes: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    h, w = x.shape[1:]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    sx, sy = nw / w, nh / h
    return x, boxes * torch.tensor([sx, sy, sx, sy])


def _augment(x: Tensor, boxes: Tensor, labels: Tensor, aug: Augment, max_size: int):
    if random.random() < aug.flip:
        w = x.shape[2]
        x = x.flip(-1)
        boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    if random.random() < aug.crop_prob:
        h, w = x.shape[1:]
        ch, cw = int(h * random.uniform(aug.min_crop, 1)), int(w * random.uniform(aug.min_crop, 1))
        top, left = random.randint(0, h - ch), random.randint(0, w - cw)
        x = x[:, top:top + ch, left:left + cw]
        boxes = boxes - torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes[:, 0::2].clamp_(0, cw)
        boxes[:, 1::2].clamp_(0, ch)
        keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        boxes, labels = boxes[keep], labels[keep]
    scale = _target_scale(x.shape[1:], max_size) * random.choice(aug.scales)
    x, boxes = _resize(x, boxes, scale)
    return x, boxes, labels


def collate(batch: list[tuple[Tensor, dict]], pad_to: int = 32) -> tuple[Tensor, Tensor, list[dict]]:
    """Pad images to a common size (a multiple of `pad_to`) with masks True on padding."""
    hmax = max(x.shape[1] for x, _ in batch)
    wmax = max(x.shape[2] for x, _ in batch)
    hmax, wmax = -(-hmax // pad_to) * pad_to, -(-wmax // pad_to) * pad_to
    images = torch.zeros(len(batch), 3, hmax, wmax)
    masks = torch.ones(len(batch), hmax, wmax, dtype=torch.bool)
    for i, (x, _) in enumerate(batch):
        images[i, :, : x.shape[1], : x.shape[2]] = x
        masks[i, : x.shape[1], : x.shape[2]] = False
    return images, masks, [t for _, t in batch]


def parse_data_spec(spec: str) -> dict:
    """`synthetic-det` or `coco:ANN.json:IMAGES_DIR[,VAL_ANN.json:VAL_IMAGES_DIR]` →
    {"kind", "train_ann", "train_images", "val_ann", "val_images"}."""
    if spec == "synthetic-det" or spec.startswith("synthetic-det:"):
        return {"kind": "synthetic-det", "root": spec.split(":", 1)[1] if ":" in spec else None}
    if spec.startswith("coco:"):
        parts = spec[len("coco:"):].split(",")
        pairs = []
        for p in parts:
            ann, sep, imgs = p.rpartition(":")
            if not sep or not ann or not imgs:
                raise EdgedetError(f"--data {spec!r}: expected coco:ANN.json:IMAGES_DIR[,VAL.json:VAL_DIR]")
            pairs.append((ann, imgs))
        if len(pairs) > 2:
            raise EdgedetError(f"--data {spec!r}: at most a train and a val pair")
        train, val = pairs[0], pairs[-1]
        return {"kind": "coco", "train_ann": train[0], "train_images": train[1],
                "val_ann": val[0], "val_images": val[1]}
    raise EdgedetError(f"unknown detection data {spec!r}: use synthetic-det or coco:ANN.json:IMAGES_DIR")
