"""Whole-network timing on a TVM target for profile adaptation: compile the ONNX network
with edgedet's TVM exporter, then measure it the way `edgedet bench --runtime tvm` does — a
fresh child process, on this CPU or on a board over TVM RPC (`HOST:PORT` for a server,
`HOST:PORT/KEY` for a tracker), where the board's own `time_evaluator` times the runs."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgedet.bench.runner import run_child
from edgedet.errors import EdgedetError
from edgedet.exporters.tvm import build_library, get_target, require_tvm
from edgedet.runtimes import SessionSpec, parse_rpc
from edgedet.runtimes.timing import LoopConfig


def rpc_device(rpc: str | None) -> str:
    """`HOST:PORT[/KEY]` → bench's device string (`rpc://…`), validated; None → the host CPU."""
    if not rpc:
        return "cpu"
    device = rpc if rpc.startswith("rpc://") else f"rpc://{rpc}"
    parse_rpc(device)  # one clear error for a malformed address
    return device


def tvm_timer(target: str, rpc: str | None, threads: int, duration_s: float = 0.5) -> Callable[[bytes], float]:
    """bytes → µs per inference (median) of the network compiled for `target` and run on the
    host (rpc None) or the board behind `rpc`."""
    import onnx

    require_tvm()
    tgt = get_target(target)
    device = rpc_device(rpc)
    if device == "cpu" and tgt.name != "host":
        raise EdgedetError(f"--target {target} builds for another CPU: give --rpc HOST:PORT[/KEY] of the board")

    def timer(model_bytes: bytes) -> float:
        model = onnx.load_from_string(model_bytes)
        inp = model.graph.input[0]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        with tempfile.TemporaryDirectory(prefix="edgedet-adapt-tvm-") as d:
            lib = Path(d) / "model.so"
            build_library(model, tgt, lib)
            spec = SessionSpec("tvm", str(lib), device=device, threads=threads,
                               inputs=[{"name": inp.name, "shape": shape, "dtype": "float32"}])
            out = run_child(spec, LoopConfig(warmup_s=0.2, duration_s=duration_s, min_iters=5,
                                             chunk=5 if device != "cpu" else 1))
        return statistics.median(out["latencies_ms"]) * 1e3

    return timer
