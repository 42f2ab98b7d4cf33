"""Sine embeddings (DETR family): positions of feature-map cells and of boxes as
interleaved sin/cos features at frequencies temperature^(2⌊i/2⌋/num_feats)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _frequencies(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    """(num_feats,) temperature^(2⌊i/2⌋/num_feats), float32."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def _interleave(pos: Tensor) -> Tensor:
    """(..., F) angles → (..., F): sin of the even features, cos of the odd, interleaved."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_embedding(mask: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """Unnormalised 2-D sine embedding (B,H,W) mask → (B, 2·num_feats, H, W): rows then
    columns, 2π·(cumulative valid index − 0.5) / temperature^(2⌊i/2⌋/num_feats)."""
    not_mask = (~mask).to(torch.float32)
    y = (not_mask.cumsum(1) - 0.5) * (2 * math.pi)
    x = (not_mask.cumsum(2) - 0.5) * (2 * math.pi)
    dim_t = _frequencies(num_feats, temperature, mask.device)
    px, py = _interleave(x[..., None] / dim_t), _interleave(y[..., None] / dim_t)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def box_sine_embedding(boxes: Tensor, num_feats: int, scale: float = 2 * math.pi,
                       temperature: float = 10000.0) -> Tensor:
    """(B,Q,4) boxes → (B,Q,4·num_feats): each coordinate ×scale through interleaved sin/cos
    (Plain-DETR: normalised boxes, scale 2π; ASAG: pixel boxes pre-divided, scale 1)."""
    dim_t = _frequencies(num_feats, temperature, boxes.device)
    pos = (boxes[..., None] if scale == 1 else boxes[..., None] * scale) / dim_t
    return _interleave(pos).flatten(2)
