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


def boxrpb_function(opset: int = 17):
    """The FunctionProto of `edgedet.BoxRPBAttention` (standard ops, attributes by reference)."""
    from onnx import AttributeProto, TensorProto, helper

    nodes = []

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(name: str, values, dtype=TensorProto.INT64, scalar: bool = False) -> str:
        vals = values if isinstance(values, list) else [values]
        dims = [] if scalar else [len(vals)]
        return node("Constant", [], name, value=helper.make_tensor("value", dtype, dims, vals))

    def attr_const(name: str, attr: str, kind: str) -> str:
        n = helper.make_node("Constant", [], [name])
        key = "value_int" if kind == "int" else "value_float"
        typ = AttributeProto.INT if kind == "int" else AttributeProto.FLOAT
        n.attribute.append(AttributeProto(name=key, ref_attr_name=attr, type=typ))
        nodes.append(n)
        return name

    def linear(x: str, w: str, b: str | None, out: str) -> str:
        wt = node("Transpose", [w], f"{out}_wt", perm=[1, 0])
        y = node("MatMul", [x, wt], f"{out}_mm" if b else out)
        return node("Add", [y, b], out) if b else y

    zero1 = const("c_axis0", [0])
    heads = node("Unsqueeze", [attr_const("a_heads", "num_heads", "int"), zero1], "heads1")
    hh = node("Unsqueeze", [attr_const("a_h", "height", "int"), zero1], "h1")
    ww = node("Unsqueeze", [attr_const("a_w", "width", "int"), zero1], "w1")
    split_shape = node("Concat", [const("c_00", [0, 0]), heads, const("c_m1", [-1])], "split_shape", axis=0)

    def to_heads(x: str, w: str, b: str, name: str) -> str:
        y = linear(x, w, b, f"{name}_lin")
        y = node("Reshape", [y, split_shape], f"{name}_split")
        return node("Transpose", [y], name, perm=[0, 2, 1, 3])

    q = node("Mul", [to_heads("query", "wq", "bq", "q_h"), attr_const("a_scale", "scale", "float")], "q")
    k = to_heads("memory_k", "wk", "bk", "k")
    v = to_heads("memory_v", "wv", "bv", "v")
    logits = node("MatMul", [q, node("Transpose", [k], "kt", perm=[0, 1, 3, 2])], "logits")
    shape5 = node("Concat", [const("c_000", [0, 0, 0]), hh, ww], "shape5", axis=0)
    logits5 = node("Reshape", [logits, shape5], "logits5")

    # box corners in pixels of the feature extent, minus pixel centres (j + 0.5)·stride
    nodes.append(
        helper.make_node(
            "Split", ["boxes", const("c_split", [1, 1, 1, 1])], ["cx", "cy", "bw", "bh"], axis=-1
        )
    )
    stride = attr_const("a_stride", "stride", "float")
    half = const("c_half", 0.5, TensorProto.FLOAT, scalar=True)
    log8 = node("Cast", [attr_const("a_log8", "log8", "int")], "log8_b", to=TensorProto.BOOL)

    def offsets(c: str, size: str, extent_attr: str, axis: str) -> str:
        n_int = attr_const(f"a_n{axis}", extent_attr, "int")
        ext = node("Mul", [node("Cast", [n_int], f"n{axis}_f", to=TensorProto.FLOAT), stride], f"ext{axis}")
        halfsize = node("Mul", [size, half], f"half{axis}")
        lo = node("Mul", [node("Sub", [c, halfsize], f"lo{axis}_n"), ext], f"lo{axis}")
        hi = node("Mul", [node("Add", [c, halfsize], f"hi{axis}_n"), ext], f"hi{axis}")
        corners = node("Concat", [lo, hi], f"corners{axis}", axis=-1)  # B,Q,2
        idx = node(
            "Range",
            [const(f"c_r0{axis}", 0, scalar=True), n_int, const(f"c_r1{axis}", 1, scalar=True)],
            f"idx{axis}",
        )
        centres = node(
            "Mul",
            [
                node(
                    "Add", [node("Cast", [idx], f"idx{axis}_f", to=TensorProto.FLOAT), half], f"idx{axis}_c"
                ),
                stride,
            ],
            f"centres{axis}",
        )
        delta = node(
            "Sub",
            [
                node("Unsqueeze", [corners, const(f"c_ax2{axis}", [2])], f"corners{axis}_u"),
                node("Unsqueeze", [centres, const(f"c_ax1{axis}", [1])], f"centres{axis}_u"),
            ],
            f"delta{axis}",
        )  # B,Q,N,2
        mag = node(
            "Log",
            [
                node(
                    "Add",
                    [node("Abs", [delta], f"abs{axis}"), const(f"c_one{axis}", 1.0, TensorProto.FLOAT, True)],
                    f"abs1{axis}",
                )
            ],
            f"ln{axis}",
        )
        log2_3 = const(f"c_l2{axis}", 1.0 / (3.0 * 0.6931471805599453), TensorProto.FLOAT, True)
        enc_log = node(
            "Mul",
            [node("Mul", [node("Sign", [delta], f"sign{axis}"), mag], f"slog{axis}"), log2_3],
            f"enc_log{axis}",
        )
        return node("Where", [log8, enc_log, delta], f"enc{axis}")

    def bias_mlp(enc: str, w1: str, b1: str, w2: str, name: str) -> str:
        hid = node("Relu", [linear(enc, w1, b1, f"{name}_l1")], f"{name}_relu")
        out = linear(hid, w2, None, f"{name}_l2")  # B,Q,N,heads
        return node("Transpose", [out], name, perm=[0, 3, 1, 2])  # B,heads,Q,N

    bx = bias_mlp(offsets("cx", "bw", "width", "x"), "x1w", "x1b", "x2w", "bias_x")
    by = bias_mlp(offsets("cy", "bh", "height", "y"), "y1w", "y1b", "y2w", "bias_y")
    logits5 = node("Add", [logits5, node("Unsqueeze", [by, const("c_axm1", [-1])], "by_u")], "logits5_y")
    logits5 = node("Add", [logits5, node("Unsqueeze", [bx, const("c_axm2", [-2])], "bx_u")], "logits5_xy")
    logits = node("Reshape", [logits5, const("c_flat", [0, 0, 0, -1])], "logits_b")
    mask_bias = node(
        "Mul",
        [
            node("Unsqueeze", ["mask", const("c_ax12", [1, 2])], "mask_u"),
            const("c_m100", -100.0, TensorProto.FLOAT, True),
        ],
        "mask_bias",
    )
    attn = node("Softmax", [node("Add", [logits, mask_bias], "logits_m")], "attn", axis=-1)
    out = node("Transpose", [node("MatMul", [attn, v], "ctx")], "ctx_t", perm=[0, 2, 1, 3])
    out = node("Reshape", [out, const("c_merge", [0, 0, -1])], "ctx_m")
    linear(out, "wo", "bo", "y")
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        ["query", "boxes", "memory_k", "memory_v", "mask", *WEIGHT_NAMES],
        ["y"],
        nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=list(ATTRS),
        doc_string="Plain-DETR global cross-attention with box-to-pixel relative position bias (BoxRPB).",
    )
