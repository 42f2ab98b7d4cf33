"""Box conversions and overlaps in pure torch (no torchvision).

Formats: `cxcywh` (centre, width, height) and `xyxy` (corners). Normalised boxes are in
[0, 1] image fractions; every function here is format-agnostic about the unit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_xywh_to_xyxy(b: Tensor) -> Tensor:
    """COCO's (x, y, w, h) top-left format to corners."""
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """Area of xyxy boxes (negative extents count as zero)."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes: (N,4) × (M,4) → (N,M). Empty unions give 0."""
    inter, union = _inter_union(a, b)
    return inter / union.clamp(min=torch.finfo(a.dtype).tiny)


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU = IoU − (|C| − |A∪B|) / |C|, C the smallest enclosing box; in [-1, 1]."""
    inter, union = _inter_union(a, b)
    eps = torch.finfo(a.dtype).tiny
    iou = inter / union.clamp(min=eps)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull.clamp(min=eps)


def elementwise_giou(a: Tensor, b: Tensor) -> Tensor:
    """GIoU of matched pairs of xyxy boxes: (N,4), (N,4) → (N,)."""
    eps = torch.finfo(a.dtype).tiny
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(a) + box_area(b) - inter
    hlt = torch.minimum(a[:, :2], b[:, :2])
    hrb = torch.maximum(a[:, 2:], b[:, 2:])
    hwh = (hrb - hlt).clamp(min=0)
    hull = hwh[:, 0] * hwh[:, 1]
    return inter / union.clamp(min=eps) - (hull - union) / hull.clamp(min=eps)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) with x clamped to [eps, 1 − eps] so it stays finite."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
