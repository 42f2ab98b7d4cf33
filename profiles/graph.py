"""ONNX → a static op graph with every tensor's shape, split into runtime work and
load-time work.

A node is *runtime* work when it reads the data input (directly or through other runtime
nodes). Everything else — weight transposes, shape arithmetic (Shape → Gather → Concat …),
constants — is folded by every runtime at load time and costs nothing, by that explicit
rule (`Graph.folded`). `Shape`/`Size` of a data tensor yield static shape values, so they
are load-time work too. Structure-only graphs (weights as graph inputs, no values) work:
only shapes are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError
from edgedet.runtimes import onnxruntime as ort_runtime

SHAPE_OPS = frozenset({"Shape", "Size"})


@dataclass
class Node:
    """One ONNX node with resolved attributes."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """Runtime nodes in topological order, shapes of every tensor they touch, and which
    tensors are data (flow from the input) versus weights/constants."""

    nodes: list[Node]
    shapes: dict[str, tuple[int, ...]]
    data: set[str]
    inputs: list[str]
    outputs: list[str]
    folded: list[Node]
    consumers: dict[str, list[int]] = field(default_factory=dict)
    elem_bytes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cons: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for t in n.inputs:
                if t:
                    cons.setdefault(t, []).append(i)
        self.consumers = cons

    def numel(self, t: str) -> int:
        return math.prod(self.shapes.get(t, ()))


def _attr_value(a: Any) -> Any:
    from onnx import helper

    return helper.get_attribute_value(a)


def load_model(model_or_path: Any):
    """A ModelProto from a path, bytes or ModelProto; corrupt input → EdgedetError."""
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    try:
        if isinstance(model_or_path, (bytes, bytearray)):
            return onnx.load_from_string(bytes(model_or_path))
        p = Path(model_or_path)
        if not p.is_file():
            raise EdgedetError(f"ONNX file not found: {p}")
        return onnx.load(str(p), load_external_data=False)
    except EdgedetError:
        raise
    except Exception as e:  # protobuf decode errors have many types
        raise EdgedetError(f"cannot read ONNX model {model_or_path!s:.200}: {e}") from None


def _dims(vi) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


def data_input_dims(model) -> tuple[str, list[int | None]]:
    """Name and dims of the first data input (not an initializer); a dimension that is
    symbolic or absent is None. `[]` when the input has no shape at all."""
    init = {i.name for i in model.graph.initializer}
    first = next((i for i in model.graph.input if i.name not in init), None)
    if first is None:
        raise EdgedetError("ONNX model has no data input")
    t = first.type.tensor_type
    if not t.HasField("shape"):
        return first.name, []
    return first.name, [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def resolve_input_size(model, input_size: int | None) -> int | None:
    """The spatial size to price an image model at: a static H×W in the file is used as is
    (a conflicting `input_size` is an error naming both); a dynamic one needs `input_size`.
    Returns the size to impose with `set_batch` (None: keep the file's)."""
    name, dims = data_input_dims(model)
    spatial = dims[2:] if len(dims) == 4 else []
    if spatial and all(d is not None for d in spatial):
        if input_size is not None and any(d != input_size for d in spatial):
            raise EdgedetError(
                f"--input-size {input_size} conflicts with the static input shape of {name!r} in the "
                f"ONNX file ({'x'.join(map(str, dims))}, i.e. {spatial[0]}x{spatial[1]}); drop "
                "--input-size or re-export the model with a dynamic (or that) input size"
            )
        return None
    if len(dims) == 4 and input_size is None:
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise EdgedetError(
            f"input {name!r} has a dynamic spatial shape ({shown}); give --input-size "
            "(input_size=) to say what size to price"
        )
    return input_size


def set_batch(model, batch: int, input_size: int | None = None):
    """Copy of `model` whose first input has batch `batch` (and spatial size `input_size`),
    intermediate shapes dropped so inference recomputes them."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    init = {i.name for i in m.graph.initializer}
    first = next(i for i in m.graph.input if i.name not in init)
    dims = first.type.tensor_type.shape.dim
    dims[0].dim_value = batch
    if input_size is not None and len(dims) == 4:
        dims[2].dim_value = input_size
        dims[3].dim_value = input_size
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    return m


def build_graph(model_or_path: Any, input_names: list[str] | None = None) -> Graph:
    """Shape-infer an ONNX model and keep the runtime nodes.

    `input_names`: the data inputs; default the first graph input that is not an
    initializer (weights of structure-only graphs are the other inputs)."""
    import onnx

    model = load_model(model_or_path)
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise EdgedetError(f"ONNX shape inference failed: {e}") from None
    g = model.graph
    init_names = {i.name for i in g.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    elem: dict[str, int] = {}
    for i in g.initializer:
        shapes[i.name] = tuple(int(d) for d in i.dims)
        elem[i.name] = _DTYPE_BYTES.get(i.data_type, 4)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        d = _dims(vi)
        if d is not None:
            shapes[vi.name] = d
        elem[vi.name] = _DTYPE_BYTES.get(vi.type.tensor_type.elem_type, 4)
    graph_inputs = [i.name for i in g.input if i.name not in init_names]
    if not graph_inputs:
        raise EdgedetError("ONNX model has no data input")
    data_inputs = input_names or graph_inputs[:1]
    for n in data_inputs:
        if n not in graph_inputs:
            raise EdgedetError(f"input {n!r} is not a graph input (inputs: {graph_inputs[:5]})")
        if n not in shapes:
            raise EdgedetError(f"input {n!r} has no static shape; set batch and size")

    data: set[str] = set(data_inputs)
    runtime: list[Node] = []
    folded: list[Node] = []
    for pn in g.node:
        attrs = {a.name: _attr_value(a) for a in pn.attribute}
        node = Node(
            pn.name or f"{pn.op_type}_{len(runtime) + len(folded)}",
            pn.op_type,
            list(pn.input),
            list(pn.output),
            attrs,
        )
        if pn.op_type not in SHAPE_OPS and any(t in data for t in pn.input if t):
            runtime.append(node)
            data.update(t for t in pn.output if t)
        else:
            folded.append(node)
    missing = [t for n in runtime for t in n.outputs if t and t not in shapes]
    if missing:
        shapes.update(_shapes_by_running(model, missing, shapes))
    for n in runtime:
        for t in n.outputs:
            if t and t not in shapes:
                raise EdgedetError(
                    f"shape of {t!r} (output of {n.op} node {n.name!r}) is not static after "
                    "shape inference; export with a fixed input size"
                )
    outputs = [o.name for o in g.output]
    return Graph(runtime, shapes, data, list(data_inputs), outputs, folded, elem_bytes=elem)


def _shapes_by_running(
    model, names: list[str], shapes: dict[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Shapes that static inference could not resolve (shape arithmetic it does not
    propagate), read off one ONNX Runtime run with zero-filled inputs."""
    import numpy as np
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for t in names:
        if t not in known:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    init = {i.name for i in m.graph.initializer}
    feeds = {}
    for vi in m.graph.input:
        if vi.name in init:
            continue
        shp = shapes.get(vi.name)
        if shp is None:
            return {}
        dt = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = np.zeros(shp, dtype=dt)
    try:
        outs = ort_runtime.session(m.SerializeToString(), optimize=False).run(names, feeds)
    except Exception:
        return {}
    return {t: tuple(int(d) for d in o.shape) for t, o in zip(names, outs, strict=True)}
