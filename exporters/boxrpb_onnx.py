"""`edgedet.BoxRPBAttention` as an ONNX custom-domain node with a standard-op local function.

Node inputs: query (B,Q,C), boxes (B,Q,4), memory_k, memory_v (B,HW,C), mask (B|1,HW)
(1 = padding), then the 14 weights of `edgedet.kernels.boxrpb_functional.WEIGHT_NAMES`.
Attributes: num_heads, height, width (int), stride, scale (float), log8 (int 0/1).
Body: projections, the axial bias Bx (Q×W) and By (Q×H) from the two MLPs, broadcast-added
to the (Q, H, W) logits, the padding bias, softmax, output projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgedet.exporters.quadraconv_onnx import DOMAIN
from edgedet.kernels.boxrpb_functional import WEIGHT_NAMES, boxrpb_attention
from edgedet.models.boxrpb import BoxRPBCrossAttention

OP_TYPE = "BoxRPBAttention"
ATTRS = {
    "num_heads": "int",
    "height": "int",
    "width": "int",
    "stride": "float",
    "scale": "float",
    "log8": "int",
}


class BoxRPBOp(torch.autograd.Function):
    """Reference values in forward; `symbolic` emits one `edgedet::BoxRPBAttention` node."""

    @staticmethod
    def forward(ctx, query, boxes, memory_k, memory_v, mask, *args):  # noqa: D401
        weights, (num_heads, height, width, stride, log8, _scale) = list(args[:14]), args[14:]
        return boxrpb_attention(
            query,
            boxes,
            memory_k,
            memory_v,
            mask,
            weights,
            num_heads=num_heads,
            height=height,
            width=width,
            stride=stride,
            log8=bool(log8),
        )

    @staticmethod
    def symbolic(g, query, boxes, memory_k, memory_v, mask, *args):
        weights, (num_heads, height, width, stride, log8, scale) = list(args[:14]), args[14:]
        y = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            query,
            boxes,
            memory_k,
            memory_v,
            mask,
            *weights,
            num_heads_i=num_heads,
            height_i=height,
            width_i=width,
            stride_f=float(stride),
            scale_f=float(scale),
            log8_i=int(log8),
        )
        y.setType(query.type())
        return y


class BoxRPBExport(nn.Module):
    """Export-time stand-in for `BoxRPBCrossAttention` (same parameters and values)."""

    onnx_op = f"{DOMAIN}.{OP_TYPE}"

    def __init__(self, src: BoxRPBCrossAttention) -> None:
        super().__init__()
        self.src = src
        self.num_heads, self.stride = src.num_heads, float(src.feature_stride)
        self.log8 = int(src.rpe_type == "abs_log8")

    def weights(self) -> list[Tensor]:
        """The module's weights as node inputs (a missing projection bias as zeros)."""
        zeros = torch.zeros(self.src.dim, dtype=self.src.q.weight.dtype)
        return [zeros if w is None else w for w in self.src.weights()]

    def forward(
        self,
        query: Tensor,
        boxes: Tensor,
        memory_k: Tensor,
        memory_v: Tensor,
        spatial_shape: tuple[int, int],
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        if padding_mask is None:
            mask = torch.zeros(1, h * w, dtype=query.dtype)
        else:
            mask = padding_mask.to(query.dtype)
        return BoxRPBOp.apply(
            query,
            boxes,
            memory_k,
            memory_v,
            mask,
            *self.weights(),
            self.num_heads,
            h,
            w,
            self.stride,
            self.log8,
            float(self.src.scale),
        )


class _Graph:
    """Collects the function body's nodes; each helper returns its output's name."""

    def __init__(self) -> None:
        from onnx import AttributeProto, TensorProto, helper

        self.helper, self.T, self.A = helper, TensorProto, AttributeProto
        self.nodes: list = []

    def node(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(self, name: str, values, dtype=None, scalar: bool = False) -> str:
        vals = values if isinstance(values, list) else [values]
        dims = [] if scalar else [len(vals)]
        dtype = self.T.INT64 if dtype is None else dtype
        return self.node("Constant", [], name, value=self.helper.make_tensor("value", dtype, dims, vals))

    def fconst(self, name: str, value: float) -> str:
        return self.const(name, value, self.T.FLOAT, scalar=True)

    def attr(self, name: str, attr: str, kind: str) -> str:
        """A Constant whose value is the function attribute `attr` (int or float)."""
        n = self.helper.make_node("Constant", [], [name])
        key = "value_int" if kind == "int" else "value_float"
        typ = self.A.INT if kind == "int" else self.A.FLOAT
        n.attribute.append(self.A(name=key, ref_attr_name=attr, type=typ))
        self.nodes.append(n)
        return name

    def linear(self, x: str, w: str, b: str | None, out: str) -> str:
        wt = self.node("Transpose", [w], f"{out}_wt", perm=[1, 0])
        y = self.node("MatMul", [x, wt], f"{out}_mm" if b else out)
        return self.node("Add", [y, b], out) if b else y


def _heads(g: _Graph, x: str, w: str, b: str, split_shape: str, name: str) -> str:
    """(B,N,C) → (B,heads,N,C/heads) after the projection."""
    y = g.node("Reshape", [g.linear(x, w, b, f"{name}_lin"), split_shape], f"{name}_split")
    return g.node("Transpose", [y], name, perm=[0, 2, 1, 3])


def _offsets(g: _Graph, c: str, size: str, extent_attr: str, axis: str, stride: str, log8: str) -> str:
    """Box corners (B,Q,2) minus pixel centres (j + 0.5)·stride → (B,Q,N,2), log8-encoded
    when the `log8` attribute is set."""
    half = g.fconst(f"c_half{axis}", 0.5)
    n_int = g.attr(f"a_n{axis}", extent_attr, "int")
    ext = g.node("Mul", [g.node("Cast", [n_int], f"n{axis}_f", to=g.T.FLOAT), stride], f"ext{axis}")
    halfsize = g.node("Mul", [size, half], f"half{axis}")
    lo = g.node("Mul", [g.node("Sub", [c, halfsize], f"lo{axis}_n"), ext], f"lo{axis}")
    hi = g.node("Mul", [g.node("Add", [c, halfsize], f"hi{axis}_n"), ext], f"hi{axis}")
    corners = g.node("Concat", [lo, hi], f"corners{axis}", axis=-1)
    start, step = g.const(f"c_r0{axis}", 0, scalar=True), g.const(f"c_r1{axis}", 1, scalar=True)
    idx = g.node("Cast", [g.node("Range", [start, n_int, step], f"idx{axis}")], f"idx{axis}_f", to=g.T.FLOAT)
    centres = g.node("Mul", [g.node("Add", [idx, half], f"idx{axis}_c"), stride], f"centres{axis}")
    corners_u = g.node("Unsqueeze", [corners, g.const(f"c_ax2{axis}", [2])], f"corners{axis}_u")
    centres_u = g.node("Unsqueeze", [centres, g.const(f"c_ax1{axis}", [1])], f"centres{axis}_u")
    delta = g.node("Sub", [corners_u, centres_u], f"delta{axis}")
    # log8: sign(d)·log2(|d| + 1)/3, written with the natural log
    abs1 = g.node("Add", [g.node("Abs", [delta], f"abs{axis}"), g.fconst(f"c_one{axis}", 1.0)], f"abs1{axis}")
    slog = g.node("Mul", [g.node("Sign", [delta], f"sign{axis}"), g.node("Log", [abs1], f"ln{axis}")], f"slog{axis}")
    enc_log = g.node("Mul", [slog, g.fconst(f"c_l2{axis}", 1.0 / (3.0 * 0.6931471805599453))], f"enc_log{axis}")
    return g.node("Where", [log8, enc_log, delta], f"enc{axis}")


def _bias_mlp(g: _Graph, enc: str, w1: str, b1: str, w2: str, name: str) -> str:
    """Encoded offsets (B,Q,N,2) → axial bias (B,heads,Q,N)."""
    hid = g.node("Relu", [g.linear(enc, w1, b1, f"{name}_l1")], f"{name}_relu")
    return g.node("Transpose", [g.linear(hid, w2, None, f"{name}_l2")], name, perm=[0, 3, 1, 2])


def _biased_logits(g: _Graph, logits: str) -> str:
    """Q·Kᵀ (B,heads,Q,HW) + By[q,i] + Bx[q,j] broadcast over the (H, W) grid."""
    zero1 = g.const("c_axis0", [0])
    hh = g.node("Unsqueeze", [g.attr("a_h", "height", "int"), zero1], "h1")
    ww = g.node("Unsqueeze", [g.attr("a_w", "width", "int"), zero1], "w1")
    shape5 = g.node("Concat", [g.const("c_000", [0, 0, 0]), hh, ww], "shape5", axis=0)
    logits5 = g.node("Reshape", [logits, shape5], "logits5")
    g.nodes.append(
        g.helper.make_node("Split", ["boxes", g.const("c_split", [1, 1, 1, 1])], ["cx", "cy", "bw", "bh"], axis=-1)
    )
    stride = g.attr("a_stride", "stride", "float")
    log8 = g.node("Cast", [g.attr("a_log8", "log8", "int")], "log8_b", to=g.T.BOOL)
    bx = _bias_mlp(g, _offsets(g, "cx", "bw", "width", "x", stride, log8), "x1w", "x1b", "x2w", "bias_x")
    by = _bias_mlp(g, _offsets(g, "cy", "bh", "height", "y", stride, log8), "y1w", "y1b", "y2w", "bias_y")
    logits5 = g.node("Add", [logits5, g.node("Unsqueeze", [by, g.const("c_axm1", [-1])], "by_u")], "logits5_y")
    logits5 = g.node("Add", [logits5, g.node("Unsqueeze", [bx, g.const("c_axm2", [-2])], "bx_u")], "logits5_xy")
    return g.node("Reshape", [logits5, g.const("c_flat", [0, 0, 0, -1])], "logits_b")


def boxrpb_function(opset: int = 17):
    """The FunctionProto of `edgedet.BoxRPBAttention` (standard ops, attributes by reference)."""
    g = _Graph()
    heads = g.node("Unsqueeze", [g.attr("a_heads", "num_heads", "int"), g.const("c_heads_ax", [0])], "heads1")
    split = g.node("Concat", [g.const("c_00", [0, 0]), heads, g.const("c_m1", [-1])], "split_shape", axis=0)
    q = g.node("Mul", [_heads(g, "query", "wq", "bq", split, "q_h"), g.attr("a_scale", "scale", "float")], "q")
    k = _heads(g, "memory_k", "wk", "bk", split, "k")
    v = _heads(g, "memory_v", "wv", "bv", split, "v")
    logits = _biased_logits(g, g.node("MatMul", [q, g.node("Transpose", [k], "kt", perm=[0, 1, 3, 2])], "logits"))
    mask_u = g.node("Unsqueeze", ["mask", g.const("c_ax12", [1, 2])], "mask_u")
    mask_bias = g.node("Mul", [mask_u, g.fconst("c_m100", -100.0)], "mask_bias")  # padding: -100
    attn = g.node("Softmax", [g.node("Add", [logits, mask_bias], "logits_m")], "attn", axis=-1)
    out = g.node("Transpose", [g.node("MatMul", [attn, v], "ctx")], "ctx_t", perm=[0, 2, 1, 3])
    g.linear(g.node("Reshape", [out, g.const("c_merge", [0, 0, -1])], "ctx_m"), "wo", "bo", "y")
    return g.helper.make_function(
        DOMAIN,
        OP_TYPE,
        ["query", "boxes", "memory_k", "memory_v", "mask", *WEIGHT_NAMES],
        ["y"],
        g.nodes,
        opset_imports=[g.helper.make_opsetid("", opset)],
        attributes=list(ATTRS),
        doc_string="Plain-DETR global cross-attention with box-to-pixel relative position bias (BoxRPB).",
    )
