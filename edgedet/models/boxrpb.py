"""BoxRPB: global cross-attention with a box-to-pixel relative position bias (Plain-DETR).

The module holds the parameters (q, k, v, proj and the two axial bias MLPs, with the
official checkpoints' names); its maths is `edgedet.kernels.boxrpb_functional`, the one
definition the exporters and fused kernels also run. The axial split costs Q·(H + W) MLP
evaluations instead of Q·H·W: the full 4-D bias is never built from a 4-D input, only
broadcast-added to the logits. Encodings of the offsets: `linear` (pixels) or `abs_log8`
(sign(Δ)·log2(|Δ| + 1)/3).

Boxes are normalised cxcywh relative to the feature map's extent (W·stride, H·stride),
i.e. the padded input. Padding positions get −100 added to their logits, as the official
implementation does. No data-dependent Python control flow: the module traces/exports.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgedet.kernels import boxrpb_functional as functional

RPE_TYPES = ("linear", "abs_log8")


def rpb_mlp(hidden: int, heads: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, heads, bias=False))


def encode_offsets(delta: Tensor, rpe_type: str) -> Tensor:
    """Offsets in pixels → MLP inputs (`linear` keeps them, `abs_log8` log-compresses)."""
    return functional.encode(delta, rpe_type == "abs_log8")


class BoxRPBCrossAttention(nn.Module):
    """Multi-head cross-attention from queries (with boxes) to a single-scale feature map."""

    def __init__(self, dim: int, num_heads: int, rpe_hidden_dim: int = 512, rpe_type: str = "linear",
                 feature_stride: int = 16, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if rpe_type not in RPE_TYPES:
            raise ValueError(f"rpe_type must be one of {RPE_TYPES}, got {rpe_type!r}")
        self.dim, self.num_heads, self.rpe_type = dim, num_heads, rpe_type
        self.feature_stride, self.rpe_hidden_dim = feature_stride, rpe_hidden_dim
        self.scale = (dim // num_heads) ** -0.5
        self.rpb_x = rpb_mlp(rpe_hidden_dim, num_heads)
        self.rpb_y = rpb_mlp(rpe_hidden_dim, num_heads)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def weights(self) -> list[Tensor | None]:
        """The parameters in `boxrpb_functional.WEIGHT_NAMES` order (None: a projection without bias)."""
        return [self.q.weight, self.q.bias, self.k.weight, self.k.bias, self.v.weight, self.v.bias,
                self.proj.weight, self.proj.bias, self.rpb_x[0].weight, self.rpb_x[0].bias, self.rpb_x[2].weight,
                self.rpb_y[0].weight, self.rpb_y[0].bias, self.rpb_y[2].weight]

    def axial_bias(self, boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Bx (B,heads,Q,W) and By (B,heads,Q,H)."""
        w = self.weights()
        return functional.axial_bias(boxes, w[8:11], w[11:14], height, width, self.feature_stride,
                                     self.rpe_type == "abs_log8")

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, -1).transpose(1, 2)  # B,heads,N,d

    def forward(self, query: Tensor, boxes: Tensor, memory_k: Tensor, memory_v: Tensor,
                spatial_shape: tuple[int, int], padding_mask: Tensor | None = None) -> Tensor:
        """query (B,Q,C), boxes (B,Q,4), memory_k/v (B,H·W,C), padding_mask (B,H·W) True on
        padding → (B,Q,C)."""
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        return functional.boxrpb_attention(query, boxes, memory_k, memory_v, padding_mask, self.weights(),
                                           num_heads=self.num_heads, height=h, width=w,
                                           stride=self.feature_stride, log8=self.rpe_type == "abs_log8")

    # ---- official checkpoints (github.com/impiga/Plain-DETR, GlobalCrossAttention) ----
    OFFICIAL_NAMES = {"cpb_mlp1.0": "rpb_x.0", "cpb_mlp1.2": "rpb_x.2",
                      "cpb_mlp2.0": "rpb_y.0", "cpb_mlp2.2": "rpb_y.2"}

    @classmethod
    def official_key(cls, key: str) -> str:
        """Official parameter name (cpb_mlp1 = x axis, cpb_mlp2 = y axis; q, k, v, proj are
        shared names) → this module's."""
        for old, new in cls.OFFICIAL_NAMES.items():
            if key.startswith(old + "."):
                return new + key[len(old):]
        return key

    def load_official_state_dict(self, sd: dict[str, Tensor], strict: bool = True):
        """Load a GlobalCrossAttention state dict (keys relative to the module)."""
        return self.load_state_dict({self.official_key(k): v for k, v in sd.items()}, strict=strict)


def naive_boxrpb_bias(attn: BoxRPBCrossAttention, boxes: Tensor, height: int, width: int) -> Tensor:
    """Reference only (tests, memory comparisons): evaluates both MLPs at every (query,
    pixel) pair from a 4-D input tensor (B,Q,H,W,4) → bias (B,heads,Q,H·W). Memory grows as
    Q·H·W·hidden — what the axial decomposition avoids."""
    dx, dy = functional.box_pixel_offsets(boxes, height, width, attn.feature_stride)
    b, q = boxes.shape[:2]
    full = torch.cat([dx[:, :, None, :, :].expand(b, q, height, width, 2),
                      dy[:, :, :, None, :].expand(b, q, height, width, 2)], dim=-1)  # B,Q,H,W,4
    full = encode_offsets(full, attn.rpe_type)
    bias = attn.rpb_x(full[..., :2]) + attn.rpb_y(full[..., 2:])  # B,Q,H,W,heads
    return bias.permute(0, 4, 1, 2, 3).reshape(b, attn.num_heads, q, height * width)


def naive_boxrpb_attention(attn: BoxRPBCrossAttention, query: Tensor, boxes: Tensor, memory_k: Tensor,
                           memory_v: Tensor, spatial_shape: tuple[int, int],
                           padding_mask: Tensor | None = None) -> Tensor:
    """Reference cross-attention with the naive 4-D bias (tests only)."""
    h, w = spatial_shape
    b, nq, c = query.shape
    q = attn._heads(attn.q(query)) * attn.scale
    k, v = attn._heads(attn.k(memory_k)), attn._heads(attn.v(memory_v))
    logits = q @ k.transpose(-2, -1) + naive_boxrpb_bias(attn, boxes, h, w)
    if padding_mask is not None:
        logits = logits + padding_mask[:, None, None, :].to(logits.dtype) * -100.0
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, nq, c)
    return attn.proj(out)


def boxrpb_cost(queries: int, heads: int, height: int, width: int, hidden: int = 512,
                dim: int = 256, batch: int = 1, bytes_per_el: int = 4) -> dict[str, dict[str, float]]:
    """Analytic FLOPs (2·MAC) and saved-activation memory (bytes) of the bias computation,
    decomposed vs naive, for one cross-attention layer; plus the attention itself."""
    hw, hpw = height * width, height + width
    mlp_macs = 2 * hidden + hidden * heads  # one 2-input MLP evaluation
    dec_points, naive_points = batch * queries * hpw, batch * queries * hw
    add = batch * heads * queries * hw  # broadcasting Bx + By into the logits
    # Held activations: MLP input, ReLU output (saved for backward), MLP output.
    decomposed = {"flops": 2.0 * dec_points * mlp_macs + 2.0 * add,
                  "memory": float(bytes_per_el * dec_points * (2 + hidden + heads))}
    naive = {"flops": 2.0 * naive_points * 2 * mlp_macs + add,  # both MLPs at every pixel
             "memory": float(bytes_per_el * naive_points * (4 + 2 * hidden + 2 * heads))}
    attention = {
        "flops": 2.0 * batch * queries * hw * dim * 2,  # q·kᵀ and attn·v
        "memory": float(bytes_per_el * batch * heads * queries * hw * 2),  # logits + softmax
    }
    return {"decomposed": decomposed, "naive": naive, "attention": attention,
            "ratio": {"flops": naive["flops"] / decomposed["flops"],
                      "memory": naive["memory"] / decomposed["memory"]},
            "setting": {"queries": queries, "heads": heads, "height": height, "width": width,
                        "hidden": hidden, "dim": dim, "batch": batch, "log2_8": math.log2(8)}}
