"""ASAG's query initialiser: anchors → content queries and first proposals.

RoIAlign 7×7 features of every anchor → Linear → LayerNorm give the content query; the
queries then attend to each other with a per-head IoF bias τ_h·log(IoF(i, j)) and a
sinusoidal embedding of the box (x, y, z = log2√(wh), r = log2√(h/w), in stride-4 units),
FFN; class logits and an (x, y, z, r) refinement give proposals that the decoder refines.
(The official code calls this block the "RPN"/RelationBlock.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgedet.models.dynamic_head import POOL, branch, focal_prior_bias
from edgedet.models.layers import MLP, box_sine_embedding
from edgedet.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from edgedet.ops.roi_align import multiscale_roi_align

XYZR_UNIT = 4.0  # pixels per xyzr unit (the official stride of C2)


def xyzr_from_xyxy(b: Tensor) -> Tensor:
    wh = b[..., 2:] - b[..., :2]
    xy = (b[..., :2] + b[..., 2:]) / 2
    z = torch.log2(wh.prod(-1, keepdim=True) + 1e-7) / 2
    r = torch.log2(wh[..., 1:2] / (wh[..., 0:1] + 1e-7) + 1e-7) / 2
    return torch.cat([xy, z, r], -1)


def xyxy_from_xyzr(t: Tensor) -> Tensor:
    scale = torch.pow(2.0, t[..., 2:3])
    ratio = torch.pow(2.0, torch.cat([-t[..., 3:4], t[..., 3:4]], -1))
    wh = scale * ratio
    return torch.cat([t[..., :2] - wh / 2, t[..., :2] + wh / 2], -1)


def iof(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Intersection over the first box's area, batched: (B,N,4), (B,M,4) xyxy → (B,N,M)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    return inter / area.clamp(min=eps)[..., None]


class QueryInit(nn.Module):
    def __init__(
        self,
        dim: int,
        num_classes: int,
        heads: int = 8,
        ffn_dim: int = 2048,
        strides: tuple[int, ...] = (8, 16, 32, 64),
    ):
        super().__init__()
        self.strides, self.heads = list(strides), heads
        self.roi = nn.Linear(dim * POOL * POOL, dim)
        self.norm_roi = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.iof_tau = nn.Parameter(torch.ones(heads))
        self.norm_attn = nn.LayerNorm(dim)
        self.ffn = MLP([dim, ffn_dim, dim])
        self.norm_ffn = nn.LayerNorm(dim)
        self.cls_branch = branch(dim, 1)
        self.reg_branch = branch(dim, 3)
        self.fc_cls = nn.Linear(dim, num_classes)
        self.fc_reg = nn.Linear(dim, 4)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.fc_cls.bias, focal_prior_bias())
        nn.init.zeros_(self.fc_reg.weight)
        nn.init.zeros_(self.fc_reg.bias)
        nn.init.uniform_(self.iof_tau, 0.0, 4.0)

    def forward(
        self, feats: list[Tensor], anchors: Tensor, image_wh: Tensor, valid: Tensor, static: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """anchors (B,Q,4) cxcywh pixels → (class logits (B,Q,K), proposals (B,Q,4) normalised
        cxcywh, content queries (B,Q,D))."""
        bsz, nq = anchors.shape[:2]
        xyxy = box_cxcywh_to_xyxy(anchors)
        roi = multiscale_roi_align(feats, self.strides, xyxy, POOL, sampling_ratio=2, static=static)
        q = self.norm_roi(self.roi(roi.flatten(2)))
        xyzr = xyzr_from_xyxy(xyxy / XYZR_UNIT)
        with torch.no_grad():
            boxes = xyxy_from_xyzr(xyzr)
            log_iof = torch.log(iof(boxes, boxes) + 1e-7)[:, None]
        bias = log_iof * self.iof_tau.view(1, -1, 1, 1)  # τ_h stays learnable
        bias = bias.masked_fill(~valid[:, None, None, :], float("-inf")).flatten(0, 1)
        qa = q + box_sine_embedding(xyzr / xyzr.new_tensor([1000.0, 1000.0, 1.0, 1.0]), q.shape[-1] // 4, scale=1)
        q = self.norm_attn(qa + self.attn(qa, qa, qa, attn_mask=bias, need_weights=False)[0])
        q = self.norm_ffn(q + self.ffn(q))
        logits = self.fc_cls(self.cls_branch(q))
        d = self.fc_reg(self.reg_branch(q))
        z = xyzr[..., 2:3]
        xyzr = torch.cat([xyzr[..., :2] + d[..., :2] * torch.pow(2.0, z), xyzr[..., 2:] + d[..., 2:]], -1)
        proposals = box_xyxy_to_cxcywh(xyxy_from_xyzr(xyzr) * XYZR_UNIT / image_wh.repeat(1, 2)[:, None, :])
        return logits, proposals, q
