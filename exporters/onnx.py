"""PyTorch → ONNX with edgedet's custom ops as local functions, and ONNX Runtime execution.

The TorchScript exporter (`dynamo=False`) writes one custom-domain node per quadratic conv
(`edgedet.QuadraConv`) and BoxRPB cross-attention (`edgedet.BoxRPBAttention`); this module
then attaches each op's standard-op body as a model-local FunctionProto, so ONNX Runtime
runs the file as is and any other consumer can inline it. `decompose=True` inlines them
(standard ops only).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.exporters import boxrpb_onnx, quadraconv_onnx
from edgedet.exporters.detection_ops_onnx import patched
from edgedet.exporters.onnx_fold import fold_static, inferred_dims
from edgedet.runtimes import onnxruntime as ort_runtime

MIN_OPSET = 17
DEFAULT_OPSET = 17


def _function_builders() -> dict[str, Callable[[int], object]]:
    """Custom op type → builder of its FunctionProto (given the model's default opset)."""
    return {
        quadraconv_onnx.OP_TYPE: quadraconv_onnx.quadraconv_function,
        boxrpb_onnx.OP_TYPE: boxrpb_onnx.boxrpb_function,
    }


@dataclass(frozen=True)
class OnnxExport:
    """An exported ONNX model in memory plus what the manifest needs to know about it."""

    model: object  # onnx.ModelProto
    input_names: list[str]
    output_names: list[str]
    custom_ops: list[str]  # "edgedet.QuadraConv", … (empty when decomposed)
    opset: int
    ir_version: int
    decomposed: bool
    source: object = None  # the graph as the TorchScript exporter wrote it (+ function bodies): parity traces

    def serialize(self) -> bytes:
        return self.model.SerializeToString()


def export_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    decompose: bool = False,
    onnx_nms: bool = True,
) -> OnnxExport:
    """Export an export-ready module (custom ops already swapped in, see `prepare`)."""
    import onnx

    if opset < MIN_OPSET:
        raise EdgedetError(
            f"opset {opset} is too old: edgedet needs opset >= {MIN_OPSET} (LayerNormalization)"
        )
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {n: {0: "batch"} for n in [*input_names, *output_names]}

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), patched(opset, onnx_nms):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            custom_opsets={quadraconv_onnx.DOMAIN: quadraconv_onnx.DOMAIN_VERSION},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    source = onnx.load_from_string(buf.getvalue())
    attach_functions(source, opset)
    bool_where_as_logic(model)
    narrow_gather_elements(model)
    custom = attach_functions(model, opset)
    if decompose:
        model = decompose_model(model)
    resolve_output_dims(model, keep={"batch"} if dynamic_batch else set())
    check_model(model)
    return OnnxExport(
        model,
        list(input_names),
        list(output_names),
        [] if decompose else custom,
        opset,
        model.ir_version,
        decompose,
        source,
    )


def attach_functions(model, opset: int) -> list[str]:
    """Add the FunctionProto of every edgedet op used in `model`; returns 'domain.op' names."""
    from onnx import helper

    builders = _function_builders()
    used = sorted({n.op_type for n in model.graph.node if n.domain == quadraconv_onnx.DOMAIN})
    unknown = [u for u in used if u not in builders]
    if unknown:
        raise EdgedetError(f"no ONNX function body for edgedet op(s) {', '.join(unknown)}")
    have = {(f.domain, f.name) for f in model.functions}
    for op in used:
        if (quadraconv_onnx.DOMAIN, op) not in have:
            model.functions.append(builders[op](opset))
    if used and not any(o.domain == quadraconv_onnx.DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(quadraconv_onnx.DOMAIN, quadraconv_onnx.DOMAIN_VERSION))
    return [f"{quadraconv_onnx.DOMAIN}.{u}" for u in used]


def bool_where_as_logic(model) -> int:
    """Where(c, a, b) on bool a, b → Or(And(c, a), And(Not(c), b)): ONNX Runtime's CPU
    provider has no bool Where kernel. Returns how many nodes were rewritten."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    types.update({i.name: i.data_type for i in model.graph.initializer})
    nodes, count = [], 0
    for n in model.graph.node:
        if n.op_type == "Where" and types.get(n.input[1]) == TensorProto.BOOL == types.get(n.input[2]):
            c, a, b = n.input
            p = f"{n.name or n.output[0]}_logic"
            nodes += [
                helper.make_node("And", [c, a], [f"{p}_ca"]),
                helper.make_node("Not", [c], [f"{p}_nc"]),
                helper.make_node("And", [f"{p}_nc", b], [f"{p}_ncb"]),
                helper.make_node("Or", [f"{p}_ca", f"{p}_ncb"], list(n.output)),
            ]
            count += 1
        else:
            nodes.append(n)
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def narrow_gather_elements(model) -> int:
    """torch.gather allows an index smaller than the data on the non-gathered axes; ONNX
    GatherElements consumers differ (OpenVINO requires equal sizes). Slice the data to the
    index's static size there. Returns how many nodes were narrowed."""
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for i in model.graph.initializer:
        shapes[i.name] = list(i.dims)
    nodes, count = [], 0
    for n in model.graph.node:
        if n.op_type == "GatherElements":
            data, idx = shapes.get(n.input[0]), shapes.get(n.input[1])
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            if data and idx and len(data) == len(idx):
                axis %= len(data)
                axes = [
                    d
                    for d in range(len(data))
                    if d != axis and data[d] is not None and idx[d] is not None and idx[d] < data[d]
                ]
                if axes:
                    p = f"{n.name or n.output[0]}_narrow"
                    consts = {"starts": [0] * len(axes), "ends": [idx[d] for d in axes], "axes": axes}
                    for key, vals in consts.items():
                        model.graph.initializer.append(
                            numpy_helper.from_array(np.asarray(vals, dtype=np.int64), f"{p}_{key}")
                        )
                    nodes.append(
                        helper.make_node(
                            "Slice", [n.input[0], f"{p}_starts", f"{p}_ends", f"{p}_axes"], [f"{p}_data"]
                        )
                    )
                    n.input[0] = f"{p}_data"
                    count += 1
        nodes.append(n)
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def decompose_model(model):
    """Inline every local function: the result uses standard ONNX ops only."""
    import onnx.inliner

    out = onnx.inliner.inline_local_functions(model)
    del out.functions[:]
    keep = [o for o in out.opset_import if o.domain != quadraconv_onnx.DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    constants_as_tensors(out.graph)
    return out


def constants_as_tensors(graph) -> None:
    """Rewrite Constant(value_int/value_float/value_ints/value_floats) as Constant(value=tensor):
    some importers (TVM Relax) read only the `value` form."""
    from onnx import TensorProto, helper

    kinds = {
        "value_int": (TensorProto.INT64, False),
        "value_ints": (TensorProto.INT64, True),
        "value_float": (TensorProto.FLOAT, False),
        "value_floats": (TensorProto.FLOAT, True),
    }
    for n in graph.node:
        if n.op_type != "Constant" or n.domain not in ("", "ai.onnx"):
            continue
        for a in list(n.attribute):
            if a.name in kinds:
                dtype, many = kinds[a.name]
                v = helper.get_attribute_value(a)
                vals = list(v) if many else [v]
                t = helper.make_tensor("value", dtype, [len(vals)] if many else [], vals)
                n.attribute.remove(a)
                n.attribute.append(helper.make_attribute("value", t))


def resolve_output_dims(model, keep: set[str]) -> int:
    """Give graph outputs the static dims the TorchScript exporter left symbolic (e.g. after a
    TopK whose k it computed from a shape, as in ASAG's static NMS as standard ops): fold a
    copy's shape arithmetic and take the dims shape inference then proves. Dims named in
    `keep` (the dynamic batch) stay symbolic. Returns how many dims were fixed."""

    def symbolic(model) -> bool:
        return any(
            d.HasField("dim_param") and d.dim_param not in keep
            for o in model.graph.output
            for d in o.type.tensor_type.shape.dim
        )

    if not symbolic(model):
        return 0
    folded = type(model)()
    folded.CopyFrom(model)
    fold_static(folded)
    dims = inferred_dims(folded)
    fixed = 0
    for o in model.graph.output:
        proven = dims.get(o.name)
        for i, d in enumerate(o.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param not in keep and proven and i < len(proven):
                if proven[i] is not None:
                    d.dim_value = proven[i]
                    fixed += 1
    return fixed


def check_model(model) -> None:
    """ONNX checker (full) and strict shape inference; a failure is an exporter bug."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise RuntimeError(f"exported ONNX model is invalid: {e}") from e


def used_custom_ops(model) -> list[str]:
    """'domain.op' of every non-standard node in the main graph."""
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})


def run_onnxruntime(model_bytes: bytes, feeds: dict[str, np.ndarray], threads: int = 1) -> list[np.ndarray]:
    """Run a serialized ONNX model on ONNX Runtime's CPU provider."""
    return ort_runtime.session(model_bytes, threads).run(None, feeds)
