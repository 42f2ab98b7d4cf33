"""Layout conversions a CPU runtime inserts between kernels. ONNX Runtime runs convolutions
(and the pools, adds and activations next to them) in a blocked NCHWc layout and converts with
`ReorderInput` / `ReorderOutput` nodes wherever a chain of such kernels meets an op that needs
plain NCHW (a reshape, a transpose, a broadcast multiply, a GEMM...). Which ops qualify is the
runtime's decision, so we ask it: its optimiser rewrites the graph and we read the reorders
back. Measured ONNX Runtime profiles price them as the kernel class `reorder`.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from edgedet.profiles.kernel import Kernel
from edgedet.runtimes import onnxruntime as ort_runtime

REORDER_CLASS = "reorder"


def fill_weights(model, seed: int | None = 0, keep_large_inputs: bool = False):
    """Copy of a (possibly structure-only) ModelProto whose weight inputs became random
    initialisers (BatchNorm variances positive), so that a runtime can load and run it.
    `seed=None` fills a constant instead, and `keep_large_inputs` leaves big non-conv weights
    (FC layers) as inputs: enough for graph rewrites that ignore values, and much faster."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    init = {i.name for i in g.initializer}
    data_input = next(i.name for i in g.input if i.name not in init)
    positive = {n.input[4] for n in g.node if n.op_type == "BatchNormalization" and len(n.input) > 4}
    rng = np.random.default_rng(seed or 0)
    conv_inputs = {t for n in g.node if n.op_type in ("Conv", "BatchNormalization") for t in n.input}
    keep = []
    for vi in g.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        big = keep_large_inputs and vi.name not in conv_inputs and math.prod(shape) > 2**16
        if vi.name in init or vi.name == data_input or big:
            keep.append(vi)
            continue
        if seed is None:
            arr = np.full(shape, 0.01, dtype=np.float32)
        elif vi.name in positive:
            arr = rng.uniform(0.5, 1.5, shape)
        else:
            fan = max(1, int(np.prod(shape[1:])) if len(shape) > 1 else 1)
            arr = rng.standard_normal(shape) / math.sqrt(fan)
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), vi.name))
    del g.input[:]
    g.input.extend(keep)
    return m


def reorder_kernel(op: str, shape: tuple[int, ...], elem_bytes: float = 4.0, name: str = "") -> Kernel:
    """One NCHW ↔ NCHWc conversion of a tensor of `shape` (NCHW) as a kernel: it reads and
    writes the tensor once."""
    n = float(math.prod(shape))
    return Kernel(op=REORDER_CLASS, name=name or op, nodes=[op], input_shapes=[tuple(shape)],
                  output_shapes=[tuple(shape)], flops=0.0, bytes_read=n * elem_bytes, bytes_written=n * elem_bytes)


def onnxruntime_reorders(model, shapes: dict[str, tuple[int, ...]], elem_bytes: float = 4.0) -> list[Kernel]:
    """The reorder kernels ONNX Runtime's optimiser (level ALL, as the profiles time with)
    inserts into `model`; `shapes` gives the NCHW shape of every original tensor."""
    import onnx

    filled = fill_weights(model, seed=None, keep_large_inputs=True)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "optimized.onnx")
        ort_runtime.session(filled.SerializeToString(), save_optimized=path, config={
            "session.optimized_model_external_initializers_file_name": "weights.bin",
            "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
        })
        opt = onnx.load(path, load_external_data=False)
    out = []
    for node in opt.graph.node:
        if node.domain == "com.microsoft.nchwc" and node.op_type in ("ReorderInput", "ReorderOutput"):
            tensor = node.input[0] if node.op_type == "ReorderInput" else node.output[0]
            shape = shapes.get(tensor)
            if shape is not None and len(shape) == 4:
                out.append(reorder_kernel(node.op_type, shape, elem_bytes, node.name))
    return out
