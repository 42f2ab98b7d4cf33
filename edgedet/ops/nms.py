"""Non-maximum suppression in pure torch (no torchvision), deterministic.

Semantics (same as torchvision.ops.nms and ONNX `NonMaxSuppression` with
center_point_box=0): boxes are xyxy, visited in decreasing score order (ties: lower index
first), and a box is dropped when its IoU with an already kept box is strictly greater than
`iou_threshold`.

Two forms:
* `nms` / `batched_nms` return a variable-length index tensor (eager, data-dependent);
* `fixed_size_nms` has static shapes only — (B, N) candidates with a validity mask in,
  (B, K) indices with a validity mask out — and no data-dependent Python control flow, so
  it traces; its valid prefix equals ONNX NonMaxSuppression's selected indices for that
  batch entry (one class, `max_output_boxes_per_class=K`), which is what an exporter maps
  it to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgedet.ops.boxes import box_iou
from edgedet.ops.export_forms import export_form


def _eager() -> bool:
    """Not being traced, exported or compiled: data-dependent shortcuts are allowed."""
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _greedy_keep(iou_sorted: Tensor, iou_threshold: float, alive: Tensor) -> Tensor:
    """Greedy suppression over score-sorted candidates.

    iou_sorted (..., N, N) pairwise IoU in sorted order, alive (..., N) bool: candidates that
    take part. Returns the kept mask (..., N). Traced, a fixed N-step recurrence of tensor ops;
    eager, the steps of candidates alive in no row are skipped (they suppress nothing).
    """
    n = iou_sorted.shape[-1]
    keep = alive.clone()
    over = iou_sorted > iou_threshold
    later = torch.ones(n, n, dtype=torch.bool, device=alive.device).triu(1)
    over = over & later
    rows = range(n)
    if _eager():
        rows = torch.nonzero(alive.reshape(-1, n).any(0)).flatten().tolist()  # the others suppress nothing
    for i in rows:
        suppress = over[..., i, :] & keep[..., i : i + 1]
        keep = keep & ~suppress
    return keep


def stable_rank_desc(x: Tensor) -> Tensor:
    """Position of each element of x (…, N) in a stable descending sort (ties keep index
    order), by pairwise comparison: static shapes and exportable, unlike sort(stable=True)."""
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    before = (x[..., None, :] > x[..., :, None]) | (
        (x[..., None, :] == x[..., :, None]) & (idx < idx[:, None])
    )
    return before.sum(-1)


def stable_argsort_desc(x: Tensor, k: int | None = None) -> Tensor:
    """Indices of the first k elements of a stable descending sort of x (…, N)."""
    k = x.shape[-1] if k is None else min(k, x.shape[-1])
    if _eager():  # the same order without the N×N comparison
        return torch.sort(x, dim=-1, descending=True, stable=True).indices[..., :k]
    rank = stable_rank_desc(x)
    return torch.topk(-rank, k, dim=-1, sorted=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices (int64) of the kept boxes, in decreasing score order. boxes (N,4) xyxy."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    keep = _greedy_keep(
        box_iou(b, b), iou_threshold, torch.ones(len(order), dtype=torch.bool, device=b.device)
    )
    return order[keep]


def separate_groups(boxes: Tensor, idxs: Tensor) -> Tensor:
    """boxes (…, 4) xyxy shifted so that boxes of different groups `idxs` (…) never overlap:
    one NMS over them is then an NMS per group (static shapes; traces)."""
    span = boxes.max() - boxes.min() + 1
    return boxes + (idxs.to(boxes.dtype) * span)[..., None]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS independently per group `idxs` (class or image); kept indices by decreasing score."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return nms(separate_groups(boxes, idxs), scores, iou_threshold)


def fixed_size_nms(
    boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float, max_output: int
) -> tuple[Tensor, Tensor]:
    """Static-shape NMS: boxes (B,N,4) xyxy, scores (B,N), valid (B,N) bool →
    (indices (B,K) int64, kept (B,K) bool), K = max_output. Kept indices come first, by
    decreasing score; the rest of the row is padding (kept False, index of a dropped box).
    In export mode (`edgedet.ops.export_forms`) it runs as the exporter's form."""
    form = export_form("fixed_size_nms")
    if form is not None:
        return form(boxes, scores, valid, iou_threshold, max_output)
    return fixed_size_nms_eager(boxes, scores, valid, iou_threshold, max_output)


def fixed_size_nms_eager(
    boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float, max_output: int
) -> tuple[Tensor, Tensor]:
    """`fixed_size_nms`'s own computation (what an export form's eager forward calls)."""
    bsz, n = scores.shape
    neg_inf = torch.finfo(scores.dtype).min
    order = stable_argsort_desc(torch.where(valid, scores, neg_inf))
    b = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
    alive = torch.gather(valid, 1, order)
    iou = torch.stack([box_iou(b[i], b[i]) for i in range(bsz)])
    keep = _greedy_keep(iou, iou_threshold, alive)
    pos = torch.arange(n, device=scores.device).expand(bsz, n)
    # Rank kept candidates first (in sorted order), then the dropped ones.
    rank_key = torch.where(keep, n - pos, -pos).to(torch.float32)
    k = min(max_output, n)
    top = torch.topk(rank_key, k, dim=1, sorted=True).indices
    idx, kept = torch.gather(order, 1, top), torch.gather(keep, 1, top)
    if k < max_output:
        pad = max_output - k
        idx = torch.cat([idx, idx.new_zeros(bsz, pad)], 1)
        kept = torch.cat([kept, kept.new_zeros(bsz, pad)], 1)
    return idx, kept
