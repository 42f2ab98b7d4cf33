"""Time an ONNX model on this machine with ONNX Runtime or OpenVINO (CPU), and describe
the machine. Used by `edgedet profile` (single kernels) and `reproduce predictor`
(whole models), so both are timed the same way."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass

import psutil

from edgedet import runtimes
from edgedet.cpu import cpu_model, vector_isa
from edgedet.errors import EdgedetError
from edgedet.runtimes import onnxruntime as ort_runtime
from edgedet.runtimes.timing import LoopConfig, time_loop


def machine_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "isa": vector_isa().to_json(),  # a measured profile holds only on this ISA
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    info["physical_cores"] = psutil.cpu_count(logical=False)
    try:
        info["load_average_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


@dataclass
class Timing:
    """Per-run latencies summarised.

    `best_ms` is what profiles fit and compare against. With one thread it is the median
    *CPU time* the process spent per run: on a CPU shared with other processes, wall
    time of a long run includes the time-slices others got (a 100 ms model preempted a
    dozen times), while CPU time counts only this run's own work. With several threads,
    CPU time is not latency, so it is the 20th percentile of wall time."""

    median_ms: float  # wall clock
    runs: int
    min_ms: float  # wall clock
    best_ms: float
    cpu_ms: float  # median process CPU time per run
    basis: str  # what best_ms is: "cpu-time" | "wall-p20"


class Runner:
    """Compile one ONNX model (bytes) with an `edgedet.runtimes` adapter (fp32, `threads`
    threads, CPU) and time it with random inputs in the shared timing loop."""

    def __init__(self, runtime: str, threads: int):
        if runtime not in ("onnxruntime", "openvino"):
            raise EdgedetError(f"unknown runtime {runtime!r} (onnxruntime | openvino)")
        why = runtimes.module(runtime).missing("cpu")
        if why:
            raise EdgedetError(f"--runtime {runtime} cannot run here: {why}")
        self.runtime, self.threads = runtime, threads
        self.version = next(iter(runtimes.module(runtime).versions().values()))

    def describe(self) -> dict:
        d = {"name": self.runtime, "version": self.version, "threads": self.threads, "device": "CPU"}
        if self.runtime == "onnxruntime":
            d["graph_optimization_level"] = "ORT_ENABLE_ALL"
        else:
            d["inference_precision_hint"] = "f32"
        return d

    def _compile(self, model_bytes: bytes) -> runtimes.Session:
        if self.runtime == "onnxruntime":
            return ort_runtime.bind(ort_runtime.session(model_bytes, self.threads), batch=None)
        with tempfile.TemporaryDirectory() as d:  # OpenVINO reads models from files
            p = os.path.join(d, "m.onnx")
            with open(p, "wb") as f:
                f.write(model_bytes)
            spec = runtimes.SessionSpec("openvino", p, batch=None, threads=self.threads, precision="fp32")
            return runtimes.module("openvino").open(spec)

    def layout_nodes(self, model_bytes: bytes, runs: int = 12) -> tuple[list[tuple[str, tuple[int, ...], float]],
                                                                         float]:
        """The NCHW ↔ NCHWc conversions ONNX Runtime wraps around a lone kernel (`ReorderInput`,
        `ReorderOutput`): (op, NCHW shape, median µs) each, and their share of the run's node
        time. Inside a model a chain of convs stays in NCHWc, so these belong to the graph's
        layout boundaries, not to the kernel. Read from the runtime's per-node profile; none for
        OpenVINO."""
        if self.runtime != "onnxruntime":
            return [], 0.0
        with tempfile.TemporaryDirectory() as d:
            sess = ort_runtime.session(model_bytes, self.threads, profile_prefix=os.path.join(d, "p"))
            bound = ort_runtime.bind(sess, batch=None)
            bound.run_timed(runs)
            with open(sess.end_profiling()) as f:
                events = json.load(f)
        nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        per_run = len({e["name"] for e in nodes})
        durs: dict[str, list[float]] = {}
        meta: dict[str, tuple[str, tuple[int, ...]]] = {}
        for e in nodes[2 * per_run:]:  # the first two runs warm up
            durs.setdefault(e["name"], []).append(float(e["dur"]))
            args = e.get("args", {})
            op = str(args.get("op_name", ""))
            if op.startswith("Reorder") and e["name"] not in meta:
                side = "input_type_shape" if op == "ReorderInput" else "output_type_shape"
                shape = next(iter(args.get(side, [{}])[0].values()), [])
                meta[e["name"]] = (op, tuple(int(v) for v in shape))
        med = {n: statistics.median(v) for n, v in durs.items()}
        total = sum(med.values())
        out = [(op, shape, med[n]) for n, (op, shape) in meta.items() if len(shape) == 4]
        return out, (sum(t for *_, t in out) / total if total > 0 else 0.0)

    def time(
        self,
        model_bytes: bytes,
        min_s: float = 0.2,
        min_runs: int = 5,
        max_runs: int = 200,
        warmup: int = 2,
        flush_mib: float = 0.0,
    ) -> Timing:
        """Time runs of a model: `warmup` runs, then until `min_s` and `min_runs` are both met
        (at most `max_runs`). `flush_mib` > 0 sweeps that much memory before every run
        (outside the timed region), so a single kernel does not find its weights and input
        in the core's caches — inside a whole model, other kernels have evicted them."""
        loop = LoopConfig(warmup_s=0.0, warmup_min_iters=max(0, warmup - 1), duration_s=min_s,
                          min_iters=min_runs, max_iters=max_runs, flush_mib=flush_mib)
        res = time_loop(self._compile(model_bytes), loop)
        ts = sorted(res.latencies_ms)
        cpu = statistics.median(res.cpu_ms)
        p20 = ts[int(0.2 * (len(ts) - 1))]
        if self.threads == 1:
            return Timing(statistics.median(ts), len(ts), ts[0], cpu, cpu, "cpu-time")
        return Timing(statistics.median(ts), len(ts), ts[0], p20, cpu, "wall-p20")
