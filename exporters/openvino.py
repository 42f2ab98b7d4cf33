"""ONNX → OpenVINO IR (model.xml + model.bin) with explicit inference precision.

`edgedet.QuadraConv` becomes either edgedet's fused CPU op (`fused=True`: the extension
library of `edgedet.kernels.openvino_extension` maps the ONNX node to one `QuadraConv` layer)
or, through a Python ConversionExtension of the ONNX frontend, three OpenVINO
GroupConvolutions, a Multiply and two Adds. `edgedet.BoxRPBAttention` becomes the library's
fused attention layer (`fused_boxrpb=True`, opt-in) or is inlined into standard ops first,
as is any other edgedet function. The precision is never left to the plugin's
default (the CPU plugin picks bf16 where the CPU has it, and a quadratic conv then drifts
by ~0.1): it is stored in the IR's `runtime_options` and passed to `compile_model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedet import cpu
from edgedet import precision as precision_names
from edgedet.exporters.boxrpb_onnx import OP_TYPE as BOXRPB
from edgedet.exporters.quadraconv_onnx import DOMAIN
from edgedet.exporters.quadraconv_onnx import OP_TYPE as QUADRACONV
from edgedet.kernels import openvino_extension

# edgedet precision name → OpenVINO INFERENCE_PRECISION_HINT value
PRECISION_HINTS = precision_names.OPENVINO_HINT


def _quadraconv_converter(node) -> list:
    """edgedet.QuadraConv → GroupConvolution ×3 (weights (C,1,1,k,k)), Multiply, Add, Add."""
    import openvino.opset13 as ops

    x, wa, wb, wc, bias = (node.get_input(i) for i in range(5))
    strides = list(node.get_attribute("strides"))
    pads = list(node.get_attribute("pads"))
    dilations = list(node.get_attribute("dilations"))
    axis1 = ops.constant(np.array([1], dtype=np.int64))

    def dwconv(w):
        return ops.group_convolution(x, ops.unsqueeze(w, axis1), strides, pads[:2], pads[2:], dilations)

    y = ops.add(ops.multiply(dwconv(wa), dwconv(wb)), dwconv(wc))
    b = ops.unsqueeze(bias, ops.constant(np.array([1, 2], dtype=np.int64)))
    return [ops.add(y, b).output(0)]


def slices_before_gather_elements_as_gather(model) -> int:
    """Slice(x, [s], [e], [axis]) feeding GatherElements → Gather(x, range(s, e), axis).

    Works around the OpenVINO CPU plugin dropping such a Slice during compilation (it
    then rejects the GatherElements shapes). Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    producer = {o: n for n in model.graph.node for o in n.output}
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    nodes, count = [], 0
    for n in model.graph.node:
        src = producer.get(n.input[0]) if n.op_type == "GatherElements" else None
        if src is not None and src.op_type == "Slice" and len(src.input) >= 4:
            start, end, axes = (consts.get(src.input[i]) for i in (1, 2, 3))
            step = consts.get(src.input[4]) if len(src.input) > 4 else None
            ok = all(v is not None and v.size == 1 for v in (start, end, axes))
            unit = step is None or int(step.reshape(-1)[0]) == 1
            if ok and unit and 0 <= int(start[0]) < int(end[0]) < 2**31:
                name = f"{src.output[0]}_as_gather"
                idx = np.arange(int(start[0]), int(end[0]), dtype=np.int64)
                model.graph.initializer.append(numpy_helper.from_array(idx, f"{name}_idx"))
                gather = helper.make_node("Gather", [src.input[0], f"{name}_idx"], [name], axis=int(axes[0]))
                nodes.append(gather)
                n.input[0] = name
                count += 1
        nodes.append(n)
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def convert(onnx_bytes: bytes, use_extensions: bool = True, fused: bool = False, fused_boxrpb: bool = False):
    """ONNX (with or without edgedet local functions) → `openvino.Model`; `fused` maps
    QuadraConv nodes to the extension's fused op instead of three GroupConvolutions, and with
    `fused_boxrpb` also BoxRPBAttention nodes to its fused attention instead of the inlined
    standard ops (opt-in: measured slower than the lowering, docs/export.md)."""
    import onnx
    import onnx.inliner
    import openvino as ov
    from openvino.frontend import FrontEndManager
    from openvino.frontend.onnx import ConversionExtension

    model = onnx.load_from_string(onnx_bytes)
    if use_extensions:
        # Inline the edgedet functions that have no extension; keep QuadraConv nodes (and,
        # with fused_boxrpb, BoxRPBAttention nodes: the library maps both).
        kept = {(DOMAIN, QUADRACONV), (DOMAIN, BOXRPB)} if fused and fused_boxrpb else {(DOMAIN, QUADRACONV)}
        others = [(f.domain, f.name) for f in model.functions if (f.domain, f.name) not in kept]
        if others:
            model = onnx.inliner.inline_selected_functions(model, others, exclude=False)
        del model.functions[:]  # kept ops go through the extension, not their bodies
    else:
        model = onnx.inliner.inline_local_functions(model)
        del model.functions[:]
    slices_before_gather_elements_as_gather(model)
    fe = FrontEndManager().load_by_framework("onnx")
    if fused and use_extensions:
        fe.add_extension(openvino_extension.pin(openvino_extension.build().library))
    else:
        fe.add_extension(ConversionExtension(QUADRACONV, DOMAIN, _quadraconv_converter))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the ONNX frontend reads files
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        ov_model = fe.convert(fe.load(str(path)))
    if not isinstance(ov_model, ov.Model):
        raise RuntimeError("OpenVINO ONNX frontend returned no model")
    return ov_model


def save_ir(ov_model, xml_path: Path, precision: str) -> None:
    """Write model.xml/.bin; fp32 weights stay fp32, and the precision hint rides in rt_info."""
    import openvino as ov

    hint = _hint(precision)
    ov_model.set_rt_info(hint, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(ov_model, str(xml_path), compress_to_fp16=(precision == "fp16"))


def compile_ir(xml_path: Path, precision: str, threads: int = 1):
    """compile_model on CPU with the precision set explicitly (edgedet's extension added
    when the IR holds its ops)."""
    core = openvino_extension.core_for(xml_path)
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    hint = precision_names.check_openvino_cpu(precision, caps, cpu.vector_isa())
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
    return core.compile_model(core.read_model(str(xml_path)), "CPU", config)


def run_compiled(compiled, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One synchronous inference; outputs in the model's output order."""
    req = compiled.create_infer_request()
    res = req.infer(feeds)
    return [np.asarray(res[o]) for o in compiled.outputs]


def _hint(precision: str) -> str:
    return PRECISION_HINTS[precision_names.canonical(precision, tuple(PRECISION_HINTS))]
