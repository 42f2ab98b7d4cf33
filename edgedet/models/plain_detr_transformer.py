"""Plain-DETR's transformer layers: the encoder over the flattened feature map and the
decoder layer whose cross-attention is BoxRPB (`edgedet.models.boxrpb`). Shapes: queries
(B, Q, d), memory (B, H·W, d), boxes (B, Q, 4) cxcywh in pixels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.models.boxrpb import BoxRPBCrossAttention


class EncoderLayer(nn.Module):
    """Transformer encoder layer over the flattened feature map (position added to q, k)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, norm_type: str):
        super().__init__()
        self.pre = norm_type == "pre_norm"
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        x = self.norm1(src) if self.pre else src
        q = x + pos
        src = src + self.dropout(self.self_attn(q, q, x, key_padding_mask=key_padding_mask,
                                                need_weights=False)[0])
        if not self.pre:
            src = self.norm1(src)
        x = self.norm2(src) if self.pre else src
        src = src + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return src if self.pre else self.norm2(src)


class DecoderLayer(nn.Module):
    """Self-attention → BoxRPB global cross-attention → FFN, pre- or post-norm. Parameter
    names follow the official GlobalDecoderLayer (norm1 = cross, norm2 = self, norm3 = FFN)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, norm_type: str, rpe_hidden_dim: int,
                 rpe_type: str, feature_stride: int):
        super().__init__()
        self.pre = norm_type == "pre_norm"
        self.cross_attn = BoxRPBCrossAttention(d, heads, rpe_hidden_dim, rpe_type, feature_stride)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor, boxes: Tensor, src: Tensor, src_pos: Tensor,
                spatial_shape: tuple[int, int], src_padding_mask: Tensor | None,
                self_attn_mask: Tensor | None) -> Tensor:
        x = self.norm2(tgt) if self.pre else tgt
        q = x + query_pos
        tgt = tgt + self.dropout(self.self_attn(q, q, x, attn_mask=self_attn_mask, need_weights=False)[0])
        if not self.pre:
            tgt = self.norm2(tgt)
        x = self.norm1(tgt) if self.pre else tgt
        tgt = tgt + self.dropout(self.cross_attn(x + query_pos, boxes, src + src_pos, src, spatial_shape,
                                                 src_padding_mask))
        if not self.pre:
            tgt = self.norm1(tgt)
        x = self.norm3(tgt) if self.pre else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.pre else self.norm3(tgt)
