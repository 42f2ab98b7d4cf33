"""BoxRPB cross-attention as one function of tensors (the `edgedet.BoxRPBAttention` node).

Same maths as `edgedet.models.boxrpb.BoxRPBCrossAttention`, with the weights passed in
node input order (wq, bq, wk, bk, wv, bv, wo, bo, x1w, x1b, x2w, y1w, y1b, y2w) so the
exporter, the ONNX function body and the TensorRT plugin all share one definition. The
attention step is pluggable: PyTorch here, the fused Triton kernel in the plugin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHT_NAMES = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "x1w", "x1b", "x2w", "y1w", "y1b", "y2w")


def axial_attention_torch(
    q: Tensor, k: Tensor, v: Tensor, bx: Tensor, by: Tensor, height: int, width: int, mask_bias: Tensor
) -> Tensor:
    """softmax(q·kᵀ + By + Bx + mask)·v with the bias broadcast over the (H, W) grid."""
    b, m, nq, _ = q.shape
    logits = (q @ k.transpose(-2, -1)).reshape(b, m, nq, height, width)
    logits = logits + by[..., :, None] + bx[..., None, :]
    logits = logits.reshape(b, m, nq, height * width) + mask_bias[:, None, None, :]
    return logits.softmax(dim=-1) @ v


def _mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    return F.linear(F.relu(F.linear(x, w1, b1)), w2)


def encode(delta: Tensor, log8: bool) -> Tensor:
    return torch.sign(delta) * torch.log2(delta.abs() + 1.0) / 3.0 if log8 else delta


def boxrpb_attention(
    query: Tensor,
    boxes: Tensor,
    memory_k: Tensor,
    memory_v: Tensor,
    mask: Tensor,
    weights: list[Tensor],
    *,
    num_heads: int,
    height: int,
    width: int,
    stride: float,
    log8: bool,
    attention: Callable[..., Tensor] = axial_attention_torch,
) -> Tensor:
    """query (B,Q,C), boxes (B,Q,4) cxcywh normalised to the feature extent, memory_k/v
    (B,H·W,C), mask (B or 1, H·W) with 1 on padding → (B,Q,C)."""
    wq, bq, wk, bk, wv, bv, wo, bo, x1w, x1b, x2w, y1w, y1b, y2w = weights
    b, nq, c = query.shape
    d = c // num_heads

    def heads(t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], t.shape[1], num_heads, d).transpose(1, 2)

    q = heads(F.linear(query, wq, bq)) * d**-0.5
    k, v = heads(F.linear(memory_k, wk, bk)), heads(F.linear(memory_v, wv, bv))
    cx, cy, w, h = boxes.unbind(-1)
    sx, sy = float(width * stride), float(height * stride)
    xs = torch.stack([(cx - 0.5 * w) * sx, (cx + 0.5 * w) * sx], -1)
    ys = torch.stack([(cy - 0.5 * h) * sy, (cy + 0.5 * h) * sy], -1)
    px = (torch.arange(width, dtype=query.dtype, device=query.device) + 0.5) * stride
    py = (torch.arange(height, dtype=query.dtype, device=query.device) + 0.5) * stride
    dx, dy = xs[:, :, None, :] - px[:, None], ys[:, :, None, :] - py[:, None]
    bx = _mlp(encode(dx, log8), x1w, x1b, x2w).permute(0, 3, 1, 2)  # B,M,Q,W
    by = _mlp(encode(dy, log8), y1w, y1b, y2w).permute(0, 3, 1, 2)  # B,M,Q,H
    mask_bias = (mask.to(query.dtype) * -100.0).expand(b, height * width)
    out = attention(q, k, v, bx, by, height, width, mask_bias)
    return F.linear(out.transpose(1, 2).reshape(b, nq, c), wo, bo)
