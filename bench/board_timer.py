"""Timing on a TVM target for profiles, on this CPU or on a board over TVM RPC (`HOST:PORT`
for a server, `HOST:PORT/KEY` for a tracker), where the board's own `time_evaluator` times
the runs: whole networks compiled by edgedet's TVM exporter and measured the way `edgedet
bench --runtime tvm` does, in a fresh child process (`tvm_timer`: adaptation, whole-network
calibration), and single kernels compiled and timed in this process (`TvmRunner`: a measured
profile's kernels)."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgedet.bench.runner import run_child
from edgedet.errors import EdgedetError
from edgedet.exporters.tvm import build_library, get_target, require_tvm
from edgedet.profiles.host_timing import Timing
from edgedet.runtimes import SessionSpec, parse_rpc
from edgedet.runtimes import tvm as tvm_runtime
from edgedet.runtimes.timing import LoopConfig
from edgedet.runtimes.tvm import connect


def rpc_device(rpc: str | None) -> str:
    """`HOST:PORT[/KEY]` → bench's device string (`rpc://…`), validated; None → the host CPU."""
    if not rpc:
        return "cpu"
    device = rpc if rpc.startswith("rpc://") else f"rpc://{rpc}"
    parse_rpc(device)  # one clear error for a malformed address
    return device


def _target_and_device(target: str, rpc: str | None, threads: int):
    """(TvmTarget, bench device string), refusing a board's target without `rpc`."""
    require_tvm()
    tgt, device = get_target(target, threads), rpc_device(rpc)
    if device == "cpu" and tgt.name != "host":
        raise EdgedetError(f"--target {target} builds for another CPU: give --rpc HOST:PORT[/KEY] of the board")
    return tgt, device


def onnx_inputs(model) -> list[dict]:
    """The graph's data inputs (initializers left out) as SessionSpec inputs {name, shape, dtype}."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    return [{"name": i.name, "shape": [d.dim_value for d in i.type.tensor_type.shape.dim],
             "dtype": str(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))}
            for i in model.graph.input if i.name not in inits]


def tvm_timer(target: str, rpc: str | None, threads: int, duration_s: float = 0.5) -> Callable[[bytes], float]:
    """bytes → µs per inference (median) of the network compiled for `target` and run on the
    host (rpc None) or the board behind `rpc`."""
    import onnx

    tgt, device = _target_and_device(target, rpc, threads)

    def timer(model_bytes: bytes) -> float:
        model = onnx.load_from_string(model_bytes)
        with tempfile.TemporaryDirectory(prefix="edgedet-adapt-tvm-") as d:
            lib = Path(d) / "model.so"
            build_library(model, tgt, lib)
            spec = SessionSpec("tvm", str(lib), device=device, threads=threads, inputs=onnx_inputs(model))
            out = run_child(spec, LoopConfig(warmup_s=0.2, duration_s=duration_s, min_iters=5,
                                             chunk=5 if device != "cpu" else 1))
        return statistics.median(out["latencies_ms"]) * 1e3

    return timer


class TvmRunner:
    """`profiles.host_timing.Runner`'s interface on a TVM target: each ONNX graph (a single
    kernel or a small chain) is compiled by edgedet's TVM exporter in this process and timed
    by the target's own `time_evaluator` — this CPU's (`rpc` None, a thread pool of `threads`)
    or a board's, over an RPC session of its own (a server serves one session at a time, and
    a crash on the board then loses one kernel). `best_ms` is the median of the evaluator's
    repeats (wall time on the device; no CPU-time basis exists there)."""

    runtime = "tvm"

    def __init__(self, target: str, rpc: str | None, threads: int):
        import tvm

        self.target, self.device = _target_and_device(target, rpc, threads)
        self.threads, self.version, self._built = threads, tvm.__version__, 0
        if self.device == "cpu":
            os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's pool starts in this process
            tvm.get_global_func("runtime.config_threadpool")(0, threads)
        else:
            connect(*parse_rpc(self.device))  # fail now, in one line, if the board cannot be reached

    def describe(self) -> dict:
        return {"name": "tvm", "version": self.version, "target": self.target.name, "device": self.device,
                "threads": self.threads, "device_timing": "time_evaluator median"}

    def layout_nodes(self, model_bytes: bytes) -> tuple[list, float]:
        """TVM keeps no separate layout-conversion nodes around a lone kernel."""
        return [], 0.0

    def time(self, model_bytes: bytes, min_s: float = 0.2, min_runs: int = 5, max_runs: int = 200,
             warmup: int = 2, flush_mib: float = 0.0) -> Timing:
        """Compile, bind random inputs, run `warmup` times, then `min_runs`…`max_runs` repeats of
        a batch of runs sized to fill about `min_s`. `flush_mib` is not supported on a board
        and ignored (TVM kernels are timed warm, as inside a network)."""
        import onnx
        import tvm

        model = onnx.load_from_string(model_bytes)
        with tempfile.TemporaryDirectory(prefix="edgedet-tvm-kernel-") as d:
            self._built += 1  # a fresh name each time: overwriting a loaded library crashes its process
            lib = Path(d) / f"kernel{os.getpid()}_{self._built}.so"
            build_library(model, self.target, lib)
            # loaded (over RPC: uploaded, its own session, closed when the session is dropped), inputs bound
            session = tvm_runtime.open(SessionSpec("tvm", str(lib), device=self.device, batch=None,
                                                   threads=self.threads, inputs=onnx_inputs(model)))
        vm, dev = session.vm, getattr(session, "dev", None) or tvm.cpu()
        for _ in range(max(1, warmup)):
            vm.invoke_stateful("main")
        dev.sync()
        probe = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=3)("main").results
        one_s = max(min(probe), 1e-7)
        repeats = max(min_runs, min(max_runs, 10))
        number = max(1, min(1000, int(min_s / repeats / one_s)))
        res = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeats)("main").results
        ts = sorted(r * 1e3 for r in res)
        med = statistics.median(ts)
        return Timing(med, len(ts) * number, ts[0], med, med, "time-evaluator")
