"""Per-node records of an OpenVINO model as the CPU plugin runs it: time, bytes moved, FLOPs.

`node_records` compiles the IR with PERF_COUNT, runs it and joins each executed node's time
with the same node in `compiled.get_runtime_model()` (the graph after the plugin's fusions:
a FullyConnected with its GELU and layer-scale post-ops is one node). Each record gives:
  bytes  every input (activations and constants) and every output, elements × item size —
         the least a node must move through memory;
  flops  an estimate of the arithmetic: for edgedet's QuadraConv (a `Reference` node with 5
         inputs, weights (C,1,kh,kw)) 6·kh·kw + 3 per output element (three multiply-adds per
         tap, then a·b + c + bias); for FullyConnected / MatMul 2·M·N·K, for Convolution
         2·(output elements)·Cin/group·kh·kw; for data movement (Transpose, Reorder, Reshape, …) 0; for
         any other node one per element of its largest input or output per original layer
         fused into it. Dense GEMM-like nodes keep their measured time in the per-node ceiling
         (`throughput_ceiling.per_node_bound`); their FLOPs give the GEMM rate they reached.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from edgedet.kernels import openvino_extension

DATA_MOVEMENT = ("Transpose", "Reorder", "Reshape", "Concatenation", "Concat", "Split", "Gather", "Broadcast",
                 "Parameter", "Result", "Input", "Output", "Constant")


def quadraconv_flops(out_elements: int, kh: int, kw: int) -> int:
    """FLOPs of the quadratic conv per output tensor: 3 multiply-adds per tap, then a·b + c + bias."""
    return out_elements * (6 * kh * kw + 3)


def node_flops(node_type: str, in_shapes: list[tuple[int, ...]], out_shapes: list[tuple[int, ...]],
               fused_layers: int) -> int:
    """The FLOP estimate of one runtime node (see the module docstring)."""
    out_el = sum(math.prod(s) for s in out_shapes)
    if node_type == "Reference" and len(in_shapes) == 5 and len(in_shapes[1]) == 4:
        return quadraconv_flops(out_el, in_shapes[1][2], in_shapes[1][3])
    if node_type in ("FullyConnected", "MatMul") and in_shapes and in_shapes[0]:
        return 2 * out_el * in_shapes[0][-1]  # 2·M·N·K, K the reduced (last) input dim
    if node_type == "Convolution" and len(in_shapes) > 1 and len(in_shapes[1]) == 4:
        return 2 * out_el * math.prod(in_shapes[1][1:])  # weights (Cout, Cin/group, kh, kw)
    if node_type in DATA_MOVEMENT:
        return 0
    biggest = max([math.prod(s) for s in in_shapes + out_shapes] or [0])
    return biggest * max(1, fused_layers)


def _rt(info, key: str) -> str:
    return info[key].astype(str) if key in info else ""


def _tensor_bytes(port) -> tuple[tuple[int, ...], int]:
    ps = port.get_partial_shape()
    if not ps.is_static:
        raise ValueError(f"runtime node port has a dynamic shape {ps}: run an inference first")
    shape = tuple(int(d) for d in ps.to_shape())
    return shape, math.prod(shape) * port.get_element_type().size


def runtime_nodes(compiled) -> dict[str, dict]:
    """Runtime-model node name → {type, exec_type, layout, fused, in_shapes, out_shapes, bytes, flops}
    (a dynamic-shape model: call after an inference, which fixes the runtime model's shapes)."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        node_type = _rt(info, "layerType")
        ins = [_tensor_bytes(i) for i in op.inputs()]
        outs = [_tensor_bytes(o) for o in op.outputs()]
        fused = [n for n in _rt(info, "originalLayersNames").split(",") if n]
        in_shapes, out_shapes = [s for s, _ in ins], [s for s, _ in outs]
        out[op.get_friendly_name()] = {
            "type": node_type, "exec_type": _rt(info, "primitiveType"), "layout": _rt(info, "outputLayouts"),
            "fused": fused, "in_shapes": in_shapes, "out_shapes": out_shapes,
            "bytes": sum(b for _, b in ins) + sum(b for _, b in outs),
            "flops": node_flops(node_type, in_shapes, out_shapes, len(fused)),
        }
    return out


def node_records(xml: Path, feeds: dict, threads: int, runs: int = 3) -> list[dict]:
    """Every executed node (median time > 0) in execution order: name, type, exec_type, layout,
    fused original layers, shapes, bytes, flops and `ms` (median over `runs`). The model is
    compiled as `edgedet bench` compiles it (f32, `threads`, shapes as in the IR), so the nodes
    are the ones the throughput cells ran."""
    core = openvino_extension.core_for(xml)
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True})
    req = compiled.create_infer_request()
    req.infer(feeds)
    per_run, types = [], {p.node_name: p.node_type for p in req.profiling_info}
    for _ in range(runs):
        req.infer(feeds)
        per_run.append({p.node_name: p.real_time.total_seconds() * 1e3 for p in req.profiling_info})
    nodes = runtime_nodes(compiled)
    out = []
    for name in per_run[0]:
        ms = statistics.median(r.get(name, 0.0) for r in per_run)
        if ms > 0 and name in nodes:
            out.append({"name": name, "ms": ms, **nodes[name], "type": types.get(name) or nodes[name]["type"]})
    return out
