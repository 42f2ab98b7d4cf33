"""edgedet's fused OpenVINO BoxRPB attention against the decomposed OpenVINO lowering (the
ONNX function body inlined to MatMul / Add / Softmax): time per node (medians of interleaved
rounds) and the process memory each compiled node adds, for growing H×W and query counts K.

Memory is the rise of the peak resident set (VmHWM, reset through /proc/self/clear_refs)
over the resident set before `compile_model`, through compilation and one inference: the CPU
plugin allocates a static graph's intermediates when it compiles, so the decomposed form's
(K, H·W) logits per head show up there and the fused node's tiles at inference. A
non-negative least-squares fit on the terms of `boxrpb_memory.TERMS` says how each grows.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from edgedet.bench.reproduce.boxrpb_memory import fit_growth
from edgedet.bench.reproduce.kernels import _bind, interleaved
from edgedet.exporters import openvino as ovx
from edgedet.exporters.boxrpb_onnx import boxrpb_function
from edgedet.kernels import openvino_extension
from edgedet.kernels.boxrpb_functional import WEIGHT_NAMES

DIM, HEADS, HIDDEN = 256, 8, 64
GRID = [(k, h, w) for k in (50, 100, 200) for h, w in ((16, 16), (32, 32), (24, 48), (48, 48))]
QUICK_GRID = [(k, h, w) for k in (25, 50) for h, w in ((8, 8), (16, 16), (12, 24))]
FORMS = ("fused", "decomposed")


def node_weights(rng, c: int, heads: int, hidden: int) -> list[np.ndarray]:
    """The 14 node weights (WEIGHT_NAMES order), fan-in scaled normal."""
    shapes = {"wq": (c, c), "wk": (c, c), "wv": (c, c), "wo": (c, c), "bq": (c,), "bk": (c,), "bv": (c,),
              "bo": (c,), "x1w": (hidden, 2), "x1b": (hidden,), "x2w": (heads, hidden), "y1w": (hidden, 2),
              "y1b": (hidden,), "y2w": (heads, hidden)}
    return [rng.normal(0, 1 / np.sqrt(shapes[n][-1]), shapes[n]).astype(np.float32) for n in WEIGHT_NAMES]


def node_model(b: int, q: int, c: int, h: int, w: int, mask_b: int, attrs: dict, weights) -> bytes:
    """One `edgedet::BoxRPBAttention` node (with its local function) as an ONNX model; inputs
    query (b,q,c), boxes (b,q,4), memory_k/v (b,h·w,c), mask (mask_b,h·w)."""
    from onnx import TensorProto, helper, numpy_helper

    names = ["query", "boxes", "memory_k", "memory_v", "mask", *WEIGHT_NAMES]
    node = helper.make_node("BoxRPBAttention", names, ["y"], domain="edgedet", **attrs)
    shapes = {"query": [b, q, c], "boxes": [b, q, 4], "memory_k": [b, h * w, c], "memory_v": [b, h * w, c],
              "mask": [mask_b, h * w]}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, q, c])
    inits = [numpy_helper.from_array(a, n) for a, n in zip(weights, WEIGHT_NAMES, strict=True)]
    graph = helper.make_graph([node], "boxrpb", inputs, [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgedet", 1)],
                              functions=[boxrpb_function()])
    return model.SerializeToString()


def _feeds(rng, k: int, h: int, w: int) -> dict[str, np.ndarray]:
    return {"query": rng.normal(0, 1, (1, k, DIM)).astype(np.float32),
            "boxes": rng.uniform(0.1, 0.6, (1, k, 4)).astype(np.float32),
            "memory_k": rng.normal(0, 1, (1, h * w, DIM)).astype(np.float32),
            "memory_v": rng.normal(0, 1, (1, h * w, DIM)).astype(np.float32),
            "mask": np.zeros((1, h * w), np.float32)}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _compile(ov_model, fused: bool, threads: int):
    core = openvino_extension.core_for(library=openvino_extension.build().library if fused else None)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(ov_model, "CPU", config)


def _added_bytes(ov_model, fused: bool, feeds: dict, threads: int) -> tuple[int, np.ndarray]:
    """Peak RSS rise (bytes) through compile + one inference, and that inference's output."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    compiled = _compile(ov_model, fused, threads)
    out = ovx.run_compiled(compiled, feeds)[0]
    added = (_status_kib("VmHWM") - before) * 1024
    del compiled
    return added, out


def measure_size(k: int, h: int, w: int, threads: int, rounds: int, inner: int, seed: int = 0) -> dict:
    """One row: both forms' added peak memory, medians of interleaved timings, agreement."""
    rng = np.random.default_rng(seed)
    attrs = {"num_heads": HEADS, "height": h, "width": w, "stride": 16.0, "scale": (DIM // HEADS) ** -0.5,
             "log8": 1}
    data = node_model(1, k, DIM, h, w, 1, attrs, node_weights(rng, DIM, HEADS, HIDDEN))
    feeds = _feeds(rng, k, h, w)
    models = {f: ovx.convert(data, fused=f == "fused", fused_boxrpb=f == "fused") for f in FORMS}
    peak, outs = {}, {}
    for form in FORMS:
        peak[form], outs[form] = _added_bytes(models[form], form == "fused", feeds, threads)
    compiled = {f: _compile(models[f], f == "fused", threads) for f in FORMS}
    ms = interleaved({f: _bind(compiled[f], feeds) for f in FORMS}, rounds, inner)
    scale = max(1.0, float(np.abs(outs["decomposed"]).max()))
    return {"runtime": "openvino", "K": k, "H": h, "W": w, "peak_bytes": peak, "latency_ms": ms,
            "speedup": ms["decomposed"] / ms["fused"],
            "max_abs_diff": float(np.abs(outs["fused"] - outs["decomposed"]).max()), "max_abs_ref": scale}


def measure(grid, threads: int, rounds: int, inner: int) -> dict:
    """Rows per size, a fit of each form's added memory, and how the fused form grows."""
    rows = [measure_size(k, h, w, threads, rounds, inner) for k, h, w in grid]
    fits = {f: fit_growth(rows, f) for f in FORMS}
    khw = {f: fits[f]["coef_bytes"]["KHW"] for f in FORMS}
    # the RSS method resolves a K·H·W term only if it sees the decomposed form's logits
    if khw["decomposed"] <= 0:
        growth = "unresolved (no K*H*W term seen in either form)"
    else:
        growth = "K*(H+W)" if khw["fused"] < 1e-2 * khw["decomposed"] else "K*H*W"
    speed = [r["speedup"] for r in rows]
    return {"rows": rows, "fit": fits, "growth": {"fused": growth},
            "speedup_geomean": float(np.exp(np.mean(np.log(speed)))),
            "method": f"OpenVINO CPU fp32, {threads} thread(s), batch 1, {DIM} channels, {HEADS} heads, MLP hidden "
                      f"{HIDDEN}, log8; memory: VmHWM rise over VmRSS through compile_model + one inference; "
                      f"time: median of {rounds} interleaved rounds of {inner}; ratio = decomposed / fused"}
