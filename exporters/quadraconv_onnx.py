"""`edgedet.QuadraConv` as an ONNX custom-domain node with a standard-op local function.

Node:  y = QuadraConv(x, wa, wb, wc, bias)  attrs strides, pads, dilations (ints), group (int)
Body:  y = Conv(x, wa) ⊙ Conv(x, wb) + Conv(x, wc) + bias   (depthwise: group = C)

The export form replaces each `QuadraConv2d` by a module calling an autograd Function whose
`symbolic` writes the node; `quadraconv_function()` is the FunctionProto any consumer can
inline (`onnx.inliner.inline_local_functions`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.kernels.quadratic import QuadraConv2d, same_padding

DOMAIN = "edgedet"
DOMAIN_VERSION = 1
OP_TYPE = "QuadraConv"


class QuadraConvOp(torch.autograd.Function):
    """Reference values in forward; `symbolic` emits one `edgedet::QuadraConv` node."""

    @staticmethod
    def forward(ctx, x, wa, wb, wc, bias, stride: int, pad: int, dilation: int):  # noqa: D401
        c = x.shape[1]
        a = F.conv2d(x, wa, None, stride, pad, dilation, c)
        b = F.conv2d(x, wb, None, stride, pad, dilation, c)
        lin = F.conv2d(x, wc, None, stride, pad, dilation, c)
        return a * b + lin + bias.view(1, -1, 1, 1)

    @staticmethod
    def symbolic(g, x, wa, wb, wc, bias, stride: int, pad: int, dilation: int):
        channels = wa.type().sizes()[0]
        y = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            x,
            wa,
            wb,
            wc,
            bias,
            strides_i=[stride, stride],
            pads_i=[pad] * 4,
            dilations_i=[dilation, dilation],
            group_i=channels,
        )
        sizes = x.type().sizes() if x.type().dim() is not None else None
        if sizes is not None and all(isinstance(s, int) for s in sizes[2:]):
            k = wa.type().sizes()[-1]
            h, w = (_out_len(s, k, stride, pad, dilation) for s in sizes[2:])
            y.setType(x.type().with_sizes([sizes[0], channels, h, w]))
        else:
            y.setType(x.type())
        return y


def _out_len(n: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


class QuadraConvExport(nn.Module):
    """Export-time stand-in for `QuadraConv2d` (same parameters, same values)."""

    onnx_op = f"{DOMAIN}.{OP_TYPE}"

    def __init__(self, src: QuadraConv2d) -> None:
        super().__init__()
        self.wa, self.wb, self.wc = src.wa, src.wb, src.wc
        bias = src.bias if src.bias is not None else torch.zeros(src.channels, dtype=src.wa.dtype)
        self.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias, requires_grad=False)
        self.stride, self.dilation = src.stride, src.dilation
        self.pad = same_padding(src.kernel_size, src.dilation)

    def forward(self, x: Tensor) -> Tensor:
        return QuadraConvOp.apply(
            x, self.wa, self.wb, self.wc, self.bias, self.stride, self.pad, self.dilation
        )


def quadraconv_function(opset: int = 17):
    """The FunctionProto of `edgedet.QuadraConv` (standard ops only, attributes by reference)."""
    from onnx import helper

    def conv(w: str, out: str):
        node = helper.make_node("Conv", ["x", w], [out])
        for name in ("strides", "pads", "dilations", "group"):
            ref = helper.make_attribute_ref(name, _attr_type(name))
            node.attribute.append(ref)
        return node

    nodes = [
        conv("wa", "a"),
        conv("wb", "b"),
        conv("wc", "lin"),
        helper.make_node("Mul", ["a", "b"], ["quad"]),
        helper.make_node("Add", ["quad", "lin"], ["sum"]),
        helper.make_node("Constant", [], ["bias_axes"], value=_int64s([1, 2])),
        helper.make_node("Unsqueeze", ["bias", "bias_axes"], ["bias_chw"]),
        helper.make_node("Add", ["sum", "bias_chw"], ["y"]),
    ]
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        ["x", "wa", "wb", "wc", "bias"],
        ["y"],
        nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=["strides", "pads", "dilations", "group"],
        doc_string="Depthwise quadratic convolution (Wa*x)(Wb*x) + Wc*x + b (QuadraNet).",
    )


def _int64s(values: list[int]):
    from onnx import TensorProto, helper

    return helper.make_tensor("value", TensorProto.INT64, [len(values)], values)


def _attr_type(name: str):
    from onnx import AttributeProto

    return AttributeProto.INT if name == "group" else AttributeProto.INTS
