"""Constant folding of a static-shape ONNX graph, for importers that need static shapes (TVM).

The TorchScript exporter writes shape arithmetic as `Shape → Gather → Sub → Concat → Reshape`
(or `Pad`, `ConstantOfShape`, …) chains even when every size is known. Two passes, run to a
fixed point, turn those chains into constants:

* `fold_shape_nodes`: ONNX shape inference gives every tensor's static dims; a `Shape` (or
  `Size`) of a tensor whose dims are all known becomes an initializer, and so does a
  `Gather` of a `Shape` that picks only known dims (a dynamic batch leaves the other dims
  symbolic);
* `fold_constants`: any standard node whose inputs are all constants is evaluated with
  `onnx.reference` and its outputs stored as initializers.

Values are unchanged: each folded tensor is what the node computes for every input.
"""

from __future__ import annotations

import numpy as np


def fold_static(model, max_rounds: int = 32, max_elements: int = 1 << 22) -> dict[str, int]:
    """Fold shape nodes and constant subgraphs in place until nothing changes.
    Returns how many nodes each pass removed."""
    done = {"shape_nodes": 0, "constant_nodes": 0, "rounds": 0}
    for _ in range(max_rounds):
        s = fold_shape_nodes(model)
        c = fold_constants(model, max_elements)
        done["shape_nodes"] += s
        done["constant_nodes"] += c
        done["rounds"] += 1
        if s == 0 and c == 0:
            break
    return done


def inferred_dims(model) -> dict[str, list[int | None]]:
    """Tensor name → dims from ONNX shape inference (None where a dim is not a known int)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    dims: dict[str, list[int | None]] = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = v.type.tensor_type
        if t.HasField("shape"):
            dims[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for i in model.graph.initializer:
        dims[i.name] = list(i.dims)
    return dims


def _shape_slice(node, rank: int) -> slice:
    """The [start:end] window of an opset-15 `Shape` node's attributes."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    return slice(start, end)


def fold_shape_nodes(model) -> int:
    """Replace `Shape`/`Size` of fully static tensors, and `Gather`s of `Shape` that pick
    static dims, by initializers. Returns how many nodes were replaced."""
    from onnx import numpy_helper

    dims = inferred_dims(model)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    shape_of: dict[str, list[int | None]] = {}  # Shape output → (partially known) values
    nodes, new_inits, count = [], [], 0
    for n in model.graph.node:
        value = None
        if n.domain in ("", "ai.onnx") and n.op_type == "Shape" and n.input[0] in dims:
            d = dims[n.input[0]]
            part = d[_shape_slice(n, len(d))]
            shape_of[n.output[0]] = part
            if all(x is not None for x in part):
                value = np.asarray(part, dtype=np.int64)
        elif n.domain in ("", "ai.onnx") and n.op_type == "Size" and n.input[0] in dims:
            d = dims[n.input[0]]
            if all(x is not None for x in d):
                value = np.asarray(int(np.prod(d, dtype=np.int64)), dtype=np.int64)
        elif (
            n.domain in ("", "ai.onnx")
            and n.op_type == "Gather"
            and n.input[0] in shape_of
            and n.input[1] in consts
        ):
            part = shape_of[n.input[0]]
            idx = consts[n.input[1]].astype(np.int64)
            picked = [part[int(i)] for i in np.atleast_1d(idx).ravel()]
            if all(x is not None for x in picked):
                value = np.asarray(picked, dtype=np.int64).reshape(idx.shape)
        if value is None:
            nodes.append(n)
            continue
        new_inits.append(numpy_helper.from_array(value, n.output[0]))
        consts[n.output[0]] = value
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(new_inits)
        _drop_unused_initializers(model)
    return count


def fold_constants(model, max_elements: int = 1 << 22) -> int:
    """Evaluate every standard node whose inputs are all constant (onnx.reference) and
    store its outputs as initializers (kept as nodes: ops the reference evaluator lacks,
    random ops, subgraph ops, and outputs above `max_elements`). Returns how many nodes
    were folded."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    known = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    nodes, folded = [], 0
    for n in model.graph.node:
        inputs = [i for i in n.input if i]
        standard = n.domain in ("", "ai.onnx") and not n.op_type.startswith("Random")
        standard = standard and not any(a.HasField("g") or len(a.graphs) for a in n.attribute)
        if not (standard and all(i in known and i not in graph_inputs for i in inputs)):
            nodes.append(n)
            continue
        try:
            init = [numpy_helper.from_array(known[i], i) for i in dict.fromkeys(inputs)]
            single = helper.make_model(
                helper.make_graph([n], "fold", [], [], init), opset_imports=list(model.opset_import)
            )
            outs = [np.asarray(o) for o in ReferenceEvaluator(single).run(list(n.output), {})]
        except Exception:  # an op the reference evaluator lacks: keep the node
            nodes.append(n)
            continue
        if any(o.size > max_elements for o in outs):
            nodes.append(n)
            continue
        for name, value in zip(n.output, outs, strict=True):
            known[name] = value
            model.graph.initializer.append(numpy_helper.from_array(value, name))
        folded += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)
    return folded


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
