"""FLOPs and bytes of an ONNX graph at concrete input shapes, and the roofline lower bound
`max(FLOPs / peak FLOP/s, bytes / bandwidth)` they imply on a measured machine.

FLOPs count convolutions and matrix products (1 multiply-add = 2 FLOPs), like
`edgedet models`; element-wise work is left out, so the bound stays a lower bound. The byte
count is the least any execution must move: the weights once, the inputs and the outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from edgedet import flops as flop_count
from edgedet.errors import EdgedetError
from edgedet.kernels import openvino_extension

_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


@dataclass
class GraphCost:
    flops: int
    weight_bytes: int
    io_bytes: int
    uncounted: list[str] = field(default_factory=list)  # matmul-like nodes whose shapes were unknown

    @property
    def min_bytes(self) -> int:
        return self.weight_bytes + self.io_bytes

    def as_dict(self) -> dict:
        d = asdict(self)
        d["min_bytes"] = self.min_bytes
        return d


def onnx_cost(path: str, input_shapes: dict[str, list[int]]) -> GraphCost:
    """Count the graph at `path` with its inputs fixed to `input_shapes`."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(path)
    except Exception as e:
        raise EdgedetError(f"cannot read ONNX graph {path}: {e}") from None
    g = model.graph
    inits = {t.name for t in g.initializer}
    for inp in g.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name], strict=False):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    try:
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # a custom op can stop inference; count what is known
        pass
    g = model.graph
    shapes: dict[str, list[int | None]] = {}
    dtypes: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        dtypes[vi.name] = tt.elem_type
    weight_bytes = 0
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
        weight_bytes += math.prod(t.dims) * _DTYPE_BYTES.get(t.data_type, 4)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    shapes[n.output[0]] = list(a.t.dims)
                    weight_bytes += math.prod(a.t.dims) * _DTYPE_BYTES.get(a.t.data_type, 4)

    def known(name: str) -> list[int] | None:
        s = shapes.get(name)
        return s if s is not None and all(isinstance(d, int) and d > 0 for d in s) else None

    io_bytes = 0
    for vi in [i for i in g.input if i.name not in inits] + list(g.output):
        s = known(vi.name)
        if s:
            io_bytes += math.prod(s) * _DTYPE_BYTES.get(dtypes.get(vi.name, 1), 4)

    flops, uncounted = 0, []
    for n in g.node:
        f = _node_flops(n, known)
        if f is None:
            uncounted.append(f"{n.op_type}:{n.name or n.output[0]}")
        else:
            flops += f
    return GraphCost(flops=flops, weight_bytes=weight_bytes, io_bytes=io_bytes, uncounted=uncounted)


def openvino_cost(path: str, input_shapes: dict[str, list[int]]) -> GraphCost:
    """The same count on an OpenVINO IR (for artifacts that carry no ONNX graph)."""
    import numpy as np
    import openvino as ov

    core = openvino_extension.core_for(path)  # must outlive the model when it holds extension ops
    try:
        model = core.read_model(path)
        model.reshape(
            {
                p.get_any_name(): ov.PartialShape(input_shapes[p.get_any_name()])
                for p in model.inputs
                if p.get_any_name() in input_shapes
            }
        )
    except Exception as e:
        raise EdgedetError(f"cannot read OpenVINO IR {path}: {e}") from None

    def nbytes(port) -> int:
        return math.prod(port.get_shape()) * np.dtype(port.get_element_type().to_dtype()).itemsize

    flops, weight_bytes, uncounted = 0, 0, []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Constant":
            weight_bytes += nbytes(op.output(0))
            continue
        if kind not in ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul", "QuadraConv"):
            continue
        if not all(op.input(i).get_partial_shape().is_static for i in range(2)):
            uncounted.append(f"{kind}:{op.get_friendly_name()}")
            continue
        x, w = list(op.input(0).get_shape()), list(op.input(1).get_shape())
        y = list(op.output(0).get_shape())
        if kind == "Convolution":
            flops += flop_count.conv(y, w)
        elif kind == "GroupConvolution":  # weights [G, O/G, I/G, k...]: per group, as [O/G, I/G, k...]
            flops += flop_count.conv(y, w[1:])
        elif kind == "QuadraConv":  # edgedet's fused op: three depthwise convs, weights [C, 1, k, k]
            flops += flop_count.quadconv(y, w)
        elif kind == "ConvolutionBackpropData":
            flops += flop_count.conv_transpose(x, w)
        else:
            k = x[-2] if op.get_attributes().get("transpose_a") else x[-1]
            flops += flop_count.matmul(y, k)
    io = sum(nbytes(p) for p in model.inputs) + sum(nbytes(p) for p in model.outputs)
    return GraphCost(flops=flops, weight_bytes=weight_bytes, io_bytes=io, uncounted=uncounted)


def _node_flops(n, known) -> int | None:
    """FLOPs of one node; 0 for element-wise and data movement; None when shapes are unknown."""
    op = n.op_type
    if op in ("Conv", "ConvTranspose") or op.lower().startswith("quadra"):
        w, x, y = known(n.input[1]) if len(n.input) > 1 else None, known(n.input[0]), known(n.output[0])
        if w is None or y is None or x is None:
            return None
        if op == "ConvTranspose":
            return flop_count.conv_transpose(x, w)
        return flop_count.quadconv(y, w) if op.lower().startswith("quadra") else flop_count.conv(y, w)
    if op in ("MatMul", "Gemm", "MatMulInteger", "FusedMatMul"):
        a, y = known(n.input[0]), known(n.output[0])
        if a is None or y is None:
            return None
        trans_a = any(at.name == "transA" and at.i for at in n.attribute)
        k = a[-2] if (op == "Gemm" and trans_a) else a[-1]
        return flop_count.matmul(y, k)
    return 0


@dataclass(frozen=True)
class Roofline:
    bound_ms: float
    compute_ms: float
    memory_ms: float
    bound_by: str  # "compute" or "memory"
    peak_gflops: float
    peak_copy_gbps: float
    threads: int

    def achieved(self, measured_ms: float) -> float:
        """Fraction of the bound achieved: 1.0 would run at the machine's physical limit."""
        return self.bound_ms / measured_ms if measured_ms > 0 else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def roofline(cost: GraphCost, peak: dict) -> Roofline:
    """Lower bound on one inference's time from `cost` and a hostinfo peak entry."""
    compute = cost.flops / (peak["gemm_gflops"] * 1e9) * 1e3
    memory = cost.min_bytes / (peak["copy_gbps"] * 1e9) * 1e3
    return Roofline(
        bound_ms=max(compute, memory),
        compute_ms=compute,
        memory_ms=memory,
        bound_by="compute" if compute >= memory else "memory",
        peak_gflops=peak["gemm_gflops"],
        peak_copy_gbps=peak["copy_gbps"],
        threads=peak["threads"],
    )
