"""Time an ONNX model on this machine with ONNX Runtime or OpenVINO (CPU), and describe
the machine. Used by `edgedet profile` (single kernels) and `reproduce predictor`
(whole models), so both are timed the same way."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from edgedet.cpu import cpu_model, vector_isa
from edgedet.errors import EdgedetError


def machine_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "isa": vector_isa().to_json(),  # a measured profile holds only on this ISA
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
    except Exception:
        pass
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
    """Compile one ONNX model (bytes) and time it with random inputs."""

    def __init__(self, runtime: str, threads: int):
        if runtime not in ("onnxruntime", "openvino"):
            raise EdgedetError(f"unknown runtime {runtime!r} (onnxruntime | openvino)")
        self.runtime, self.threads = runtime, threads
        if runtime == "onnxruntime":
            import onnxruntime as ort

            self.version = ort.__version__
        else:
            try:
                import openvino as ov
            except ImportError:
                raise EdgedetError("OpenVINO is not installed; `pip install openvino`") from None
            self.version = ov.get_version()
            self.core = ov.Core()

    def describe(self) -> dict:
        d = {"name": self.runtime, "version": self.version, "threads": self.threads, "device": "CPU"}
        if self.runtime == "onnxruntime":
            d["graph_optimization_level"] = "ORT_ENABLE_ALL"
        else:
            d["inference_precision_hint"] = "f32"
        return d

    def _compile(self, model_bytes: bytes):
        if self.runtime == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
            inputs = sess.get_inputs()
            feeds = {i.name: _random(i.shape, i.type) for i in inputs}
            return lambda: sess.run(None, feeds)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.onnx")
            with open(p, "wb") as f:
                f.write(model_bytes)
            model = self.core.read_model(p)
            # the CPU plugin defaults to bf16 on CPUs that have it: ask for f32 explicitly
            cm = self.core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": "f32",
                    "INFERENCE_NUM_THREADS": self.threads,
                    "PERFORMANCE_HINT": "LATENCY",
                },
            )
        req = cm.create_infer_request()
        feeds = {
            i.get_any_name(): _random(list(i.get_partial_shape().to_shape()), "tensor(float)")
            for i in cm.inputs
        }
        return lambda: req.infer(feeds)

    def layout_nodes(self, model_bytes: bytes, runs: int = 12) -> tuple[list[tuple[str, tuple[int, ...], float]],
                                                                         float]:
        """The NCHW ↔ NCHWc conversions ONNX Runtime wraps around a lone kernel (`ReorderInput`,
        `ReorderOutput`): (op, NCHW shape, median µs) each, and their share of the run's node
        time. Inside a model a chain of convs stays in NCHWc, so these belong to the graph's
        layout boundaries, not to the kernel. Read from the runtime's per-node profile; none for
        OpenVINO."""
        if self.runtime != "onnxruntime":
            return [], 0.0
        import json

        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = self.threads, 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(d, "p")
            sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
            feeds = {i.name: _random(i.shape, i.type) for i in sess.get_inputs()}
            for _ in range(runs):
                sess.run(None, feeds)
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
        """Time runs of a model. `flush_mib` > 0 sweeps that much memory before every run
        (outside the timed region), so a single kernel does not find its weights and input
        in the core's caches — inside a whole model, other kernels have evicted them."""
        run = self._compile(model_bytes)
        for _ in range(warmup):
            run()
        ts: list[float] = []
        cs: list[float] = []
        start = time.perf_counter()
        sweep = np.zeros(int(flush_mib * 2**18), dtype=np.float32) if flush_mib > 0 else None
        while len(ts) < max_runs and (len(ts) < min_runs or time.perf_counter() - start < min_s):
            if sweep is not None:
                sweep.sum()  # read-only: evicts without leaving dirty lines to write back
            c0 = time.process_time()
            t0 = time.perf_counter()
            run()
            ts.append((time.perf_counter() - t0) * 1e3)
            cs.append((time.process_time() - c0) * 1e3)
        ts.sort()
        cpu = statistics.median(cs)
        p20 = ts[int(0.2 * (len(ts) - 1))]
        if self.threads == 1:
            return Timing(statistics.median(ts), len(ts), ts[0], cpu, cpu, "cpu-time")
        return Timing(statistics.median(ts), len(ts), ts[0], p20, cpu, "wall-p20")


def _random(shape, type_str: str):
    shp = [int(d) if isinstance(d, int) or (isinstance(d, str) and d.isdigit()) else 1 for d in shape]
    if "int64" in type_str:
        return np.zeros(shp, dtype=np.int64)
    return np.random.default_rng(0).standard_normal(shp).astype(np.float32)
