"""BoxRPB cross-attention as one function of tensors: the one definition of its maths.

    out = softmax(q·kᵀ/√d + B) v,     B[m, q, (i, j)] = Bx[m, q, j] + By[m, q, i]

For a query box with corners (x1, y1, x2, y2) in pixels and pixel centres
px_j = (j + 0.5)·stride, Bx = MLPx([x1 − px_j, x2 − px_j]) and By likewise on rows; each
MLP is Linear(2, hidden) → ReLU → Linear(hidden, heads, no bias). Offsets are encoded
`linear` (pixels) or `log8` (sign(Δ)·log2(|Δ| + 1)/3). Padding positions get −100.

The weights come in node input order (wq, bq, wk, bk, wv, bv, wo, bo, x1w, x1b, x2w, y1w,
y1b, y2w), so the model (`edgedet.models.boxrpb.BoxRPBCrossAttention`), the exporter, the
ONNX function body and the TensorRT plugin all run this function. The attention step is
pluggable: PyTorch here, the fused Triton kernel in the plugin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHT_NAMES = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "x1w", "x1b", "x2w", "y1w", "y1b", "y2w")


def axial_attention_torch(
    q: Tensor, k: Tensor, v: Tensor, bx: Tensor, by: Tensor, height: int, width: int, mask_bias: Tensor | None
) -> Tensor:
    """softmax(q·kᵀ + By + Bx + mask)·v with the bias broadcast over the (H, W) grid;
    q (B,M,Q,d), k/v (B,M,H·W,d), bx (B,M,Q,W), by (B,M,Q,H), mask_bias (B,H·W) or None."""
    b, m, nq, _ = q.shape
    logits = (q @ k.transpose(-2, -1)).reshape(b, m, nq, height, width)
    logits = logits + by[..., :, None] + bx[..., None, :]
    logits = logits.reshape(b, m, nq, height * width)
    if mask_bias is not None:
        logits = logits + mask_bias[:, None, None, :]
    return logits.softmax(dim=-1) @ v


def _mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    return F.linear(F.relu(F.linear(x, w1, b1)), w2)


def encode(delta: Tensor, log8: bool) -> Tensor:
    """Offsets in pixels → MLP inputs (`log8` log-compresses, else kept as they are)."""
    return torch.sign(delta) * torch.log2(delta.abs() + 1.0) / 3.0 if log8 else delta


def box_pixel_offsets(boxes: Tensor, height: int, width: int, stride: float) -> tuple[Tensor, Tensor]:
    """(B,Q,4) cxcywh normalised to the feature extent → Δx (B,Q,W,2) = [x1 − px_j, x2 − px_j]
    and Δy (B,Q,H,2), in pixels of the (padded) input."""
    cx, cy, w, h = boxes.unbind(-1)
    sx, sy = float(width * stride), float(height * stride)
    xs = torch.stack([(cx - 0.5 * w) * sx, (cx + 0.5 * w) * sx], -1)  # B,Q,2
    ys = torch.stack([(cy - 0.5 * h) * sy, (cy + 0.5 * h) * sy], -1)
    px = (torch.arange(width, dtype=boxes.dtype, device=boxes.device) + 0.5) * stride
    py = (torch.arange(height, dtype=boxes.dtype, device=boxes.device) + 0.5) * stride
    return xs[:, :, None, :] - px[:, None], ys[:, :, None, :] - py[:, None]


def axial_bias(boxes: Tensor, x_mlp: list[Tensor], y_mlp: list[Tensor], height: int, width: int,
               stride: float, log8: bool) -> tuple[Tensor, Tensor]:
    """Bx (B,M,Q,W) and By (B,M,Q,H) from the two MLPs' weights (w1, b1, w2) each."""
    dx, dy = box_pixel_offsets(boxes, height, width, stride)
    bx = _mlp(encode(dx, log8), *x_mlp).permute(0, 3, 1, 2)
    by = _mlp(encode(dy, log8), *y_mlp).permute(0, 3, 1, 2)
    return bx, by


def boxrpb_attention(
    query: Tensor,
    boxes: Tensor,
    memory_k: Tensor,
    memory_v: Tensor,
    mask: Tensor | None,
    weights: list[Tensor | None],
    *,
    num_heads: int,
    height: int,
    width: int,
    stride: float,
    log8: bool,
    attention: Callable[..., Tensor] = axial_attention_torch,
) -> Tensor:
    """query (B,Q,C), boxes (B,Q,4) cxcywh normalised to the feature extent, memory_k/v
    (B,H·W,C), mask (B or 1, H·W) with 1 on padding, or None → (B,Q,C). The projection
    biases may be None (no bias)."""
    wq, bq, wk, bk, wv, bv, wo, bo, x1w, x1b, x2w, y1w, y1b, y2w = weights
    b, nq, c = query.shape
    d = c // num_heads

    def heads(t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], t.shape[1], num_heads, d).transpose(1, 2)

    q = heads(F.linear(query, wq, bq)) * d**-0.5
    k, v = heads(F.linear(memory_k, wk, bk)), heads(F.linear(memory_v, wv, bv))
    bx, by = axial_bias(boxes, [x1w, x1b, x2w], [y1w, y1b, y2w], height, width, stride, log8)
    mask_bias = None if mask is None else (mask.to(query.dtype) * -100.0).expand(b, height * width)
    out = attention(q, k, v, bx, by, height, width, mask_bias)
    return F.linear(out.transpose(1, 2).reshape(b, nq, c), wo, bo)
