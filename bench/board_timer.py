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
from edgedet.runtimes.timing import LoopConfig
from edgedet.runtimes.tvm import connect, device_tensor


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
    tgt = get_target(target, threads)
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

        require_tvm()
        self.target, self.threads, self.version = get_target(target, threads), threads, tvm.__version__
        self.device = rpc_device(rpc)
        if self.device == "cpu" and self.target.name != "host":
            raise EdgedetError(f"--target {target} builds for another CPU: give --rpc HOST:PORT[/KEY] of the board")
        self._built = 0
        if self.device == "cpu":
            os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's pool starts in this process
            tvm.get_global_func("runtime.config_threadpool")(0, threads)
        else:
            self._connect()  # fail now, in one line, if the board cannot be reached

    def _connect(self):
        remote = connect(*parse_rpc(self.device))
        remote.get_function("runtime.config_threadpool")(1, self.threads)
        return remote

    def describe(self) -> dict:
        return {"name": "tvm", "version": self.version, "target": self.target.name, "device": self.device,
                "threads": self.threads, "device_timing": "time_evaluator median"}

    def layout_nodes(self, model_bytes: bytes) -> tuple[list, float]:
        """TVM keeps no separate layout-conversion nodes around a lone kernel."""
        return [], 0.0

    def _load(self, lib: Path):
        import tvm
        from tvm import relax

        if self.device == "cpu":
            return relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu()), tvm.cpu()
        remote = self._connect()  # closed when the VM and device are dropped
        remote.upload(str(lib))
        dev = remote.cpu()
        return relax.VirtualMachine(remote.load_module(lib.name), dev), dev

    def time(self, model_bytes: bytes, min_s: float = 0.2, min_runs: int = 5, max_runs: int = 200,
             warmup: int = 2, flush_mib: float = 0.0) -> Timing:
        """Compile, bind random inputs, run `warmup` times, then `min_runs`…`max_runs` repeats of
        a batch of runs sized to fill about `min_s`. `flush_mib` is not supported on a board
        and ignored (TVM kernels are timed warm, as inside a network)."""
        import numpy as np
        import onnx

        model = onnx.load_from_string(model_bytes)
        inits = {i.name for i in model.graph.initializer}
        shapes = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
                  if i.name not in inits]
        with tempfile.TemporaryDirectory(prefix="edgedet-tvm-kernel-") as d:
            self._built += 1  # a fresh name each time: overwriting a loaded library crashes its process
            lib = Path(d) / f"kernel{os.getpid()}_{self._built}.so"
            build_library(model, self.target, lib)
            vm, dev = self._load(lib)
        rng = np.random.default_rng(0)
        vm.set_input("main", *[device_tensor(rng.standard_normal(s).astype("float32"), dev) for s in shapes])
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
