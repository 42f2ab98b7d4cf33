"""TensorRT plugins for edgedet's ONNX ops, through TensorRT's Python plugin API.

`register()` defines `edgedet::QuadraConv` and `edgedet::BoxRPBAttention` with
`tensorrt.plugin` (TensorRT ≥ 10.6): a shape/type descriptor (`trtp.register`) and a JIT
implementation (`trtp.impl`) that runs the Triton kernels of `edgedet.kernels` on the
stream TensorRT hands over. The ONNX parser finds them by node op type plus the
`plugin_namespace` attribute the exporter adds. Importing this module needs neither
TensorRT nor a GPU; `register()` needs both.
"""

from __future__ import annotations

from edgedet.errors import EdgedetError
from edgedet.kernels.boxrpb_functional import WEIGHT_NAMES

NAMESPACE = "edgedet"
_registered = False


def register() -> None:
    """Register both plugins once per process."""
    global _registered
    if _registered:
        return
    try:
        import tensorrt.plugin as trtp
    except ImportError:
        raise EdgedetError(
            "TensorRT >= 10.6 with tensorrt.plugin is needed: pip install 'edgedet[tensorrt]'"
        ) from None
    _define_quadraconv(trtp)
    _define_boxrpb(trtp)
    _registered = True


def _define_quadraconv(trtp) -> None:
    import numpy as np
    import numpy.typing as npt

    @trtp.register(f"{NAMESPACE}::QuadraConv")
    def quadraconv_desc(
        x: trtp.TensorDesc,
        wa: trtp.TensorDesc,
        wb: trtp.TensorDesc,
        wc: trtp.TensorDesc,
        bias: trtp.TensorDesc,
        strides: npt.NDArray[np.int32],
        pads: npt.NDArray[np.int32],
        dilations: npt.NDArray[np.int32],
        group: int,
    ) -> trtp.TensorDesc:
        out = x.like()
        k = wa.shape_expr[3]
        for axis in (2, 3):
            i = axis - 2
            span = int(dilations[i]) * (k - 1) + 1
            out.shape_expr[axis] = (x.shape_expr[axis] + int(pads[i]) + int(pads[i + 2]) - span) // int(
                strides[i]
            ) + 1
        return out

    @trtp.autotune(f"{NAMESPACE}::QuadraConv")
    def quadraconv_autotune(x, wa, wb, wc, bias, outputs):
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16")]

    @trtp.impl(f"{NAMESPACE}::QuadraConv")
    def quadraconv_impl(x, wa, wb, wc, bias, strides, pads, dilations, group, outputs, stream) -> None:
        import torch

        from edgedet.kernels.triton_quadratic import quadconv_triton

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            t = [torch.as_tensor(a, device="cuda") for a in (x, wa, wb, wc, bias)]
            out = torch.as_tensor(outputs[0], device="cuda")
            quadconv_triton(*t, stride=int(strides[0]), pad=int(pads[0]), dilation=int(dilations[0]), out=out)


def _define_boxrpb(trtp) -> None:
    descs = ", ".join(f"{n}: trtp.TensorDesc" for n in ("query", "boxes", "memory_k", "memory_v", "mask"))
    weights = ", ".join(f"{n}: trtp.TensorDesc" for n in WEIGHT_NAMES)
    attrs = "num_heads: int, height: int, width: int, stride: float, scale: float, log8: int"
    # trtp.register reads the annotated signature, so the 19-input descriptor is spelled out.
    src = f"def boxrpb_desc({descs}, {weights}, {attrs}) -> trtp.TensorDesc:\n    return query.like()\n"
    scope = {"trtp": trtp}
    exec(src, scope)  # noqa: S102 - builds a signature, no user input
    trtp.register(f"{NAMESPACE}::BoxRPBAttention")(scope["boxrpb_desc"])

    # trtp.impl checks its signature against the descriptor's: spelled out the same way.
    impl_src = (
        f"def boxrpb_impl({', '.join(['query', 'boxes', 'memory_k', 'memory_v', 'mask', *WEIGHT_NAMES])}, "
        f"num_heads, height, width, stride, scale, log8, outputs, stream):\n"
        f"    _run_boxrpb([query, boxes, memory_k, memory_v, mask, "
        f"{', '.join(WEIGHT_NAMES)}], num_heads, height, width, stride, log8, outputs, stream)\n"
    )
    scope = {"_run_boxrpb": _run_boxrpb}
    exec(impl_src, scope)  # noqa: S102
    trtp.impl(f"{NAMESPACE}::BoxRPBAttention")(scope["boxrpb_impl"])


def _run_boxrpb(tensors, num_heads, height, width, stride, log8, outputs, stream) -> None:
    import torch

    from edgedet.kernels.triton_boxrpb import boxrpb_attention

    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        t = [torch.as_tensor(a, device="cuda") for a in tensors]
        out = torch.as_tensor(outputs[0], device="cuda")
        out.copy_(
            boxrpb_attention(
                *t[:5],
                t[5:],
                num_heads=int(num_heads),
                height=int(height),
                width=int(width),
                stride=float(stride),
                log8=bool(log8),
            )
        )


def plugin_onnx(model):
    """A copy of an exported ONNX model for TensorRT's parser: local functions dropped (so
    the parser cannot inline them) and `plugin_namespace`/`plugin_version` on edgedet nodes."""
    import copy

    from onnx import helper

    m = copy.deepcopy(model)
    del m.functions[:]
    for n in m.graph.node:
        if n.domain == NAMESPACE:
            n.attribute.extend(
                [
                    helper.make_attribute("plugin_namespace", NAMESPACE),
                    helper.make_attribute("plugin_version", "1"),
                ]
            )
    return m
