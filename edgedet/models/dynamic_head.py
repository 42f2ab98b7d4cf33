"""Sparse R-CNN's dynamic instance-interaction decoder layer (ASAG-S's decoder).

Per query: RoIAlign 7×7 features of its box; self-attention among the image's queries;
dynamic instance interaction — the query generates two matrices (D×64 and 64×D) that mix
its own RoI features (`DynamicConv`); FFN; class logits and box deltas
(dx, dy, dw, dh)/(2, 2, 1, 1) applied to the normalised cxcywh box.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgedet.ops.boxes import box_cxcywh_to_xyxy
from edgedet.ops.roi_align import multiscale_roi_align

SCALE_CLAMP = math.log(100000.0 / 16)
POOL = 7


def branch(dim: int, depth: int) -> nn.Sequential:
    """depth × (Linear without bias → LayerNorm → ReLU): the class / box towers."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU()]
    return nn.Sequential(*layers)


def focal_prior_bias(prior: float = 0.01) -> float:
    return -math.log((1 - prior) / prior)


class DynamicConv(nn.Module):
    """Query-conditioned 1×1 mixing of the query's own RoI features: f·W1 → LN → ReLU →
    ·W2 → LN → ReLU → Linear(49·D → D) → LN → ReLU, W1, W2 generated from the query."""

    def __init__(self, dim: int, dim_dynamic: int = 64, pool: int = POOL):
        super().__init__()
        self.dim, self.dim_dynamic = dim, dim_dynamic
        self.dynamic_layer = nn.Linear(dim, 2 * dim * dim_dynamic)
        self.norm1 = nn.LayerNorm(dim_dynamic)
        self.norm2 = nn.LayerNorm(dim)
        self.out_layer = nn.Linear(dim * pool * pool, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.act = nn.ReLU()

    def forward(self, query: Tensor, roi: Tensor) -> Tensor:
        """query (N, D), roi (N, 49, D) → (N, D)."""
        params = self.dynamic_layer(query)
        w1 = params[:, : self.dim * self.dim_dynamic].view(-1, self.dim, self.dim_dynamic)
        w2 = params[:, self.dim * self.dim_dynamic :].view(-1, self.dim_dynamic, self.dim)
        x = self.act(self.norm1(torch.bmm(roi, w1)))
        x = self.act(self.norm2(torch.bmm(x, w2)))
        return self.act(self.norm3(self.out_layer(x.flatten(1))))


def apply_deltas(deltas: Tensor, boxes: Tensor, weights=(2.0, 2.0, 1.0, 1.0)) -> Tensor:
    """Sparse R-CNN box update on cxcywh: c += d_c/w_c · size, size ·= exp(d_s/w_s)."""
    d = deltas / deltas.new_tensor(weights)
    dwh = d[..., 2:].clamp(max=SCALE_CLAMP)
    xy = boxes[..., :2] + d[..., :2] * boxes[..., 2:]
    return torch.cat([xy, boxes[..., 2:] * dwh.exp()], -1)


class DynamicDecoderLayer(nn.Module):
    """One Sparse R-CNN head: boxes (B,Q,4) normalised cxcywh + query features (B,Q,D) →
    class logits, refined boxes, new query features."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        ffn_dim: int = 2048,
        heads: int = 8,
        strides: tuple[int, ...] = (8, 16, 32, 64),
        dim_dynamic: int = 64,
    ):
        super().__init__()
        self.strides = list(strides)
        self.embed = nn.Parameter(
            torch.zeros(dim)
        )  # per-decoder query embedding (official decoder_embedding)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.inst_interact = DynamicConv(dim, dim_dynamic)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.act = nn.ReLU()
        self.cls_branch = branch(dim, 1)
        self.reg_branch = branch(dim, 3)
        self.class_logits = nn.Linear(dim, num_classes)
        self.bboxes_delta = nn.Linear(dim, 4)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.class_logits.bias, focal_prior_bias())
        nn.init.zeros_(self.bboxes_delta.weight)
        nn.init.zeros_(self.bboxes_delta.bias)

    def pool(self, feats: list[Tensor], boxes: Tensor, image_wh: Tensor, static: bool = False) -> Tensor:
        """RoIAlign 7×7 (sampling ratio 2) of normalised cxcywh boxes → (B·Q, 49, D)."""
        bsz, nq = boxes.shape[:2]
        px = box_cxcywh_to_xyxy(boxes) * image_wh.repeat(1, 2)[:, None, :]
        roi = multiscale_roi_align(feats, self.strides, px, POOL, sampling_ratio=2, static=static)
        return roi.flatten(3).transpose(2, 3).reshape(bsz * nq, POOL * POOL, -1)

    def forward(
        self,
        feats: list[Tensor],
        boxes: Tensor,
        query: Tensor,
        image_wh: Tensor,
        valid: Tensor,
        static: bool = False,
        roi: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`roi`: this layer's pooled features if already computed (heads that share boxes)."""
        bsz, nq, dim = query.shape
        if roi is None:
            roi = self.pool(feats, boxes, image_wh, static)
        q = query + self.embed
        q = self.norm1(q + self.self_attn(q, q, q, key_padding_mask=~valid, need_weights=False)[0])
        q = q.reshape(bsz * nq, dim)
        q = self.norm2(q + self.inst_interact(q, roi))
        q = self.norm3(q + self.linear2(self.act(self.linear1(q))))
        logits = self.class_logits(self.cls_branch(q)).view(bsz, nq, self.class_logits.out_features)
        deltas = self.bboxes_delta(self.reg_branch(q)).view(bsz, nq, 4)
        return logits, apply_deltas(deltas, boxes), q.view(bsz, nq, dim)
