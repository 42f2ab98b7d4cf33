"""RoIAlign in pure torch (no torchvision), torchvision / ONNX `RoiAlign` semantics.

For a box (x1,y1,x2,y2) in input pixels, with offset o = 0.5 if `aligned` else 0:
start = x1·s − o, size = x2·s − o − start (clamped to ≥ 1 when not aligned), s the
spatial_scale. Each of the ph×pw bins averages g_h×g_w bilinear samples at
start + (p + (i+0.5)/g)·size/pooled, g = sampling_ratio, or ceil(size/pooled) per box when
sampling_ratio ≤ 0 (adaptive). A sample outside [−1, H]×[−1, W] counts as 0; inside, its
coordinates are clamped to the image. `aligned=True` is ONNX coordinate_transformation_mode
"half_pixel", `aligned=False` is "output_half_pixel"; mode "avg".

Two computations give the same values:
- "grid": F.grid_sample at exactly those points (clamped coordinates, zero padding for the
  samples that count as 0), then an average pool over each bin;
- "separable": bilinear sampling is separable, so each box's pooled map is Ay·F·Axᵀ, with
  Ay (ph×H) and Ax (pw×W) the bins' averaged hat weights max(0, 1 − |cell − c|): two
  matrix products, much faster on small maps (training at 128 px) and in backward.
Both are static-shape when sampling_ratio > 0; export maps the op to ONNX `RoiAlign`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from edgedet.ops.export_forms import export_form

METHODS = ("auto", "grid", "separable")
SEPARABLE_MAX_CELLS = 4096  # "auto" pools maps up to 64×64 cells separably (faster there, measured)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _axis_samples(start: Tensor, size: Tensor, pooled: int, grid: Tensor, g_max: int, extent: int):
    """Sample coordinates along one axis: (B,Q,pooled,g_max) clamped coords and validity."""
    bin_size = size / pooled
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    i = torch.arange(g_max, device=start.device, dtype=start.dtype)
    step = bin_size / grid.clamp(min=1)
    c = start[..., None, None] + p[:, None] * bin_size[..., None, None] + (i + 0.5) * step[..., None, None]
    ok = (i < grid[..., None, None]) & (c >= -1.0) & (c <= extent)
    return c.clamp(0, extent - 1), ok


def roi_align_batched(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    method: str = "auto",
) -> Tensor:
    """features (B,C,H,W), boxes (B,Q,4) xyxy in input pixels → (B,Q,C,ph,pw).

    Box q of image b is pooled from features[b] only (the usual padded-queries layout).
    `method` "grid", "separable" or "auto" (separable up to SEPARABLE_MAX_CELLS cells).
    In export mode (`edgedet.ops.export_forms`) it runs as the exporter's form."""
    form = export_form("roi_align_batched")
    if form is not None:
        return form(features, boxes, output_size, spatial_scale, sampling_ratio, aligned, method)
    return roi_align_batched_eager(features, boxes, output_size, spatial_scale, sampling_ratio, aligned, method)


def roi_align_batched_eager(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    method: str = "auto",
) -> Tensor:
    """`roi_align_batched`'s own computation (what an export form's eager forward calls)."""
    if method not in METHODS:
        raise ValueError(f"roi_align method must be one of {METHODS}, got {method!r}")
    bsz, ch, h, w = features.shape
    ph, pw = _pair(output_size)
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (boxes * spatial_scale - off).unbind(-1)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling_ratio > 0:
        gh = torch.full_like(rh, float(sampling_ratio))
        gw = torch.full_like(rw, float(sampling_ratio))
        gh_max = gw_max = sampling_ratio
    else:  # adaptive: data-dependent grid size, eager use only
        gh, gw = torch.ceil(rh / ph), torch.ceil(rw / pw)
        gh_max = max(int(gh.max().item()) if gh.numel() else 1, 1)
        gw_max = max(int(gw.max().item()) if gw.numel() else 1, 1)
    ys, oky = _axis_samples(y1, rh, ph, gh, gh_max, h)
    xs, okx = _axis_samples(x1, rw, pw, gw, gw_max, w)
    if method == "separable" or (method == "auto" and h * w <= SEPARABLE_MAX_CELLS):
        return _pool_separable(features, _axis_weights(ys, oky, gh, h), _axis_weights(xs, okx, gw, w))
    return _pool_grid(features, ys, oky, gh, xs, okx, gw)


def _axis_weights(c: Tensor, ok: Tensor, grid: Tensor, extent: int) -> Tensor:
    """(B,Q,pooled,g) sample coords → (B,Q,pooled,extent): each bin's bilinear weights on
    the axis' cells, summed over its samples and divided by the box's sample count."""
    cells = torch.arange(extent, device=c.device, dtype=c.dtype)
    hat = (1.0 - (cells - c[..., None]).abs()).clamp(min=0) * ok[..., None].to(c.dtype)
    return hat.sum(-2) / grid.clamp(min=1)[..., None, None]


def _pool_separable(features: Tensor, ay: Tensor, ax: Tensor) -> Tensor:
    """out[b,q,c] = Ay[b,q] · F[b,c] · Ax[b,q]ᵀ for ay (B,Q,ph,H), ax (B,Q,pw,W)."""
    bsz, ch, h, w = features.shape
    q, ph, pw = ay.shape[1], ay.shape[2], ax.shape[2]
    rows = torch.bmm(ay.reshape(bsz, q * ph, h), features.transpose(1, 2).reshape(bsz, h, ch * w))
    out = torch.matmul(rows.view(bsz, q, ph * ch, w), ax.transpose(2, 3))  # (B,Q,ph·C,pw)
    return out.view(bsz, q, ph, ch, pw).transpose(2, 3)


def _pool_grid(features: Tensor, ys: Tensor, oky: Tensor, gh: Tensor, xs: Tensor, okx: Tensor, gw: Tensor) -> Tensor:
    """grid_sample at every sample point, then each bin's average."""
    bsz, ch, h, w = features.shape
    q, ph, gh_max = ys.shape[1:]
    pw, gw_max = xs.shape[2:]
    # Pixel → grid_sample coordinates (align_corners=False: g = (2p + 1)/size − 1). Samples
    # outside [−1, size] go far off the map, where zero padding makes them count as 0.
    gy = torch.where(oky, (2 * ys + 1) / h - 1, torch.full_like(ys, -8.0))
    gx = torch.where(okx, (2 * xs + 1) / w - 1, torch.full_like(xs, -8.0))
    shape = (bsz, q, ph, gh_max, pw, gw_max)
    grid = torch.stack([gx[:, :, None, None].expand(shape), gy[..., None, None].expand(shape)], dim=-1)
    grid = grid.reshape(bsz, q * ph * gh_max, pw * gw_max, 2)
    samples = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Sum each bin's gh_max × gw_max samples, then divide by the box's own sample count.
    out = F.avg_pool2d(samples, (gh_max, gw_max)) * (gh_max * gw_max)
    out = out.view(bsz, ch, q, ph, pw) / (gh * gw).clamp(min=1)[:, None, :, None, None]
    return out.permute(0, 2, 1, 3, 4)


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    method: str = "auto",
) -> Tensor:
    """torchvision.ops.roi_align signature: rois (K,5) = (batch index, x1, y1, x2, y2) →
    (K,C,ph,pw). Eager (groups boxes by image)."""
    ph, pw = _pair(output_size)
    out = features.new_zeros(rois.shape[0], features.shape[1], ph, pw)
    bidx = rois[:, 0].long()
    for b in range(features.shape[0]):
        sel = torch.nonzero(bidx == b).flatten()
        if sel.numel():
            pooled = roi_align_batched(
                features[b : b + 1], rois[sel, 1:][None], (ph, pw), spatial_scale, sampling_ratio, aligned, method
            )
            out[sel] = pooled[0]
    return out


def roi_levels(
    boxes: Tensor, strides: list[int], canonical_scale: float = 224.0, canonical_level: int = 4
) -> Tensor:
    """FPN level index (0-based into `strides`) for each xyxy box: the Feature Pyramid paper's
    k = ⌊k0 + log2(√area / 224)⌋ clamped to the available levels (torchvision LevelMapper)."""
    k_min, k_max = math.log2(strides[0]), math.log2(strides[-1])
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).clamp(min=0)
    k = torch.floor(canonical_level + torch.log2(area.sqrt() / canonical_scale) + 1e-6)
    return (k.clamp(k_min, k_max) - k_min).long()


def multiscale_roi_align(
    features: list[Tensor],
    strides: list[int],
    boxes: Tensor,
    output_size: int | tuple[int, int],
    sampling_ratio: int = 2,
    aligned: bool = False,
    static: bool = True,
) -> Tensor:
    """Pool each box (B,Q,4 xyxy, image pixels) from its FPN level → (B,Q,C,ph,pw).

    static=True pools every level for every box and selects (fixed shapes, traceable);
    static=False pools each box on its own level only (eager, ~levels× cheaper). Per box
    the arithmetic is the same, so both give the same values."""
    level = roi_levels(boxes, strides)
    if static:
        out = None
        for i, (feat, stride) in enumerate(zip(features, strides, strict=True)):
            pooled = roi_align_batched(feat, boxes, output_size, 1.0 / stride, sampling_ratio, aligned)
            pooled = pooled * (level == i).to(pooled.dtype)[..., None, None, None]
            out = pooled if out is None else out + pooled
        return out
    bsz, q = boxes.shape[:2]
    ph, pw = _pair(output_size)
    out = boxes.new_zeros(bsz * q, features[0].shape[1], ph, pw)
    base = torch.arange(bsz, device=boxes.device)[:, None] * q
    for i, (feat, stride) in enumerate(zip(features, strides, strict=True)):
        sel = level == i
        n = int(sel.sum(1).max()) if sel.numel() else 0
        if n == 0:
            continue
        order = torch.sort((~sel).to(torch.int32), dim=1, stable=True).indices[
            :, :n
        ]  # this level's boxes first
        picked = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
        pooled = roi_align_batched(feat, picked, (ph, pw), 1.0 / stride, sampling_ratio, aligned)
        keep = torch.gather(sel, 1, order)
        out = out.index_put(((base + order)[keep],), pooled[keep])
    return out.view(bsz, q, -1, ph, pw)
