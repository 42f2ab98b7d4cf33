"""`edgedet bench` in Python: one fresh child process per batch, then the report assembled
from their raw latencies (statistics, throughput, memory, roofline, warnings), validated
against the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from edgedet import precision
from edgedet.bench import hostinfo as host
from edgedet.bench.roofline import GraphCost, onnx_cost, openvino_cost, roofline
from edgedet.bench.schema import SCHEMA_VERSION, validate
from edgedet.bench.stats import summarize, throughput_items_per_s
from edgedet.bench.target import Target, resolve
from edgedet.errors import EdgedetError
from edgedet.exporters.tvm_target import check_cpu_flags
from edgedet.runtimes import RUNTIMES, SessionSpec, check_available, parse_rpc
from edgedet.runtimes.timing import LoopConfig

HIGH_COV = 0.10
MAX_SAMPLES = 20000
FIRST_DOMINATES = 10.0  # first inference slower than this many medians…
FIRST_DOMINATES_MIN_MS = 20.0  # …and than this, so microsecond models do not warn

TIMING = {
    "tvm-rpc": "TVM time_evaluator on the remote device, number=1 (one timed inference per repeat)",
    "tensorrt": "CUDA events around each enqueue on the engine's stream, synchronised per inference",
    "cuda": "host perf_counter_ns around each inference, device synchronised before the clock stops",
    "host": "host perf_counter_ns around each synchronous inference call (inputs bound once beforehand)",
}

BENCH_PRECISIONS = ("fp32", "fp16", "bf16")  # int8 is measured by benching a quantised artifact


@dataclass
class BenchConfig:
    target: str
    runtime: str
    device: str = "cpu"
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None  # None: every CPU this process may use
    streams: int = 1
    precision: str = "fp32"  # any spelling edgedet.precision accepts; stored canonical
    warmup_s: float = 2.0
    duration_s: float = 10.0
    min_iters: int = 50
    input_size: int | None = None
    hostinfo_path: str | None = None  # measured peaks (edgedet hostinfo --json); None: measure briefly
    roofline: bool = True
    child_timeout_s: float = 3600.0


def timing_method(runtime: str, device: str) -> str:
    if device.startswith("rpc://"):
        return TIMING["tvm-rpc"]
    if runtime == "tensorrt":
        return TIMING["tensorrt"]
    return TIMING["cuda"] if device in ("cuda", "GPU") else TIMING["host"]


def check_config(cfg: BenchConfig) -> None:
    if cfg.runtime == "tensorrt" and cfg.device == "cpu":
        cfg.device = "cuda"  # the CLI default; TensorRT runs on NVIDIA GPUs only
    if cfg.runtime not in RUNTIMES:
        raise EdgedetError(f"unknown runtime '{cfg.runtime}'; choose from {', '.join(RUNTIMES)}")
    cfg.precision = precision.canonical(cfg.precision, BENCH_PRECISIONS)
    if not cfg.batches or any(b < 1 for b in cfg.batches):
        raise EdgedetError("--batch needs positive integers, e.g. --batch 1,8,32")
    if cfg.device.startswith("rpc://"):
        parse_rpc(cfg.device)
        if cfg.runtime != "tvm":
            raise EdgedetError("--device rpc://… runs TVM libraries on a remote board; use --runtime tvm")
    if cfg.threads is not None and cfg.threads < 1:
        raise EdgedetError("--threads must be at least 1")
    if cfg.streams < 1:
        raise EdgedetError("--streams must be at least 1")


def run_child(
    spec: SessionSpec, loop: LoopConfig, timeout_s: float = 3600.0, wrapper: list[str] | None = None
) -> dict:
    """Measure one batch in a fresh interpreter; returns the child's raw JSON (or raises its error).
    `wrapper` prefixes the command (e.g. `/usr/bin/time -v`) for independent checks."""
    with tempfile.TemporaryDirectory(prefix="edgedet-bench-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(spec_path, "w") as f:
            json.dump({"session": spec.as_dict(), "loop": loop.__dict__}, f)
        cmd = [*(wrapper or []), sys.executable, "-m", "edgedet.bench.child", spec_path, out_path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EdgedetError(
                f"batch {spec.batch}: the measurement took longer than {timeout_s:.0f} s; "
                "lower --duration-s / --min-iters"
            ) from None
        if not os.path.exists(out_path):
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            why = tail[-1] if tail else f"exit code {proc.returncode}"
            if proc.returncode < 0:
                why = f"killed by signal {-proc.returncode} (out of memory?)"
            raise EdgedetError(f"batch {spec.batch}: the {spec.runtime} child process failed: {why}")
        with open(out_path) as f:
            out = json.load(f)
        out["_stderr"] = proc.stderr
    if "error" in out:
        raise EdgedetError(out["error"])
    return out


def _peak(cfg: BenchConfig, threads: int) -> dict | None:
    if cfg.hostinfo_path:
        try:
            with open(cfg.hostinfo_path) as f:
                info = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise EdgedetError(f"cannot read hostinfo {cfg.hostinfo_path}: {e}") from None
        p = host.peak_for(info, threads)
        if p is not None:
            return dict(p, source=cfg.hostinfo_path)
    p = host.measure_peak(threads, seconds=0.6)
    return {**p.__dict__, "source": "measured briefly by bench (edgedet hostinfo measures it properly)"}


def _cost(target: Target, child: dict) -> tuple[GraphCost | None, str]:
    if "cost" in child:
        c = child["cost"]
        return GraphCost(int(c["flops"]), int(c["weight_bytes"]), int(c["io_bytes"])), c.get(
            "source", "runtime"
        )
    if target.onnx_path:
        return onnx_cost(target.onnx_path, child["inputs"]), f"ONNX graph {target.onnx_path}"
    if target.path.lower().endswith(".xml"):
        return openvino_cost(target.path, child["inputs"]), f"OpenVINO IR {target.path}"
    return None, "no ONNX graph or OpenVINO IR to count FLOPs from"


def _stride(n: int) -> int:
    """Keep at most MAX_SAMPLES latencies in the JSON (statistics always use all of them)."""
    return max(1, -(-n // MAX_SAMPLES))


def _device(url: str, host_info: dict, target: Target) -> dict:
    """A remote board: what the artifact says it was built for; the host that drove it apart."""
    built_for = (target.manifest or {}).get("target") or "unknown target"
    return {
        "name": url,
        "remote": url,
        "cpu_model": f"remote board (library built for {built_for})",
        "physical_cores": None,
        "logical_cpus": None,
        "gpus": [],
        "isa": None,  # the board is not queried; the manifest says what it was built for
        "os": "remote (not queried over RPC)",
        "load_average_1m": None,
        "host": host_info,
    }


def _tvm_build(target: Target, remote: bool) -> str:
    """'tuned|untuned, built for <target>' from a TVM artifact's manifest; refuses (one line) a
    host library needing CPU features this CPU lacks."""
    info = (target.manifest or {}).get("runtime") or {}
    if not remote:
        check_cpu_flags(info, target.path)
    tuning = info.get("tuning", "untuned")
    built = info.get("target_name") or (target.manifest or {}).get("target") or "unknown target"
    return f"{tuning}, built for {built}"


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every batch of `cfg` and return the validated result JSON."""
    check_config(cfg)
    check_available(cfg.runtime, "cpu" if cfg.device.startswith("rpc://") else cfg.device)
    target = resolve(cfg.target, cfg.runtime)
    remote = cfg.device.startswith("rpc://")
    tvm_build = _tvm_build(target, remote) if cfg.runtime == "tvm" else None
    threads = cfg.threads or (0 if remote else host.usable_cpus())  # 0: the board's own default
    device_info = host.fingerprint()
    warnings = _machine_warnings(device_info, threads, remote)
    children = _measure_batches(cfg, target, threads, progress)
    local_cpu = cfg.device in ("cpu", "CPU") and cfg.runtime != "tensorrt"
    peak = _peak(cfg, threads) if cfg.roofline and local_cpu else None
    results = []
    for c in children:
        st = summarize(c["latencies_ms"])
        results.append(_batch_result(c, st, target, peak, remote))
        warnings.extend(_batch_warnings(c, st))
    first = children[0]
    version = next(iter(first["versions"].values()), "unknown")
    out = {
        "schema_version": SCHEMA_VERSION,
        "kind": "measured",
        "device": _device(cfg.device, device_info, target)
        if remote
        else {"name": cfg.device, **device_info, "remote": None},
        "runtime": {
            "name": cfg.runtime,
            "version": str(version),
            "versions": first["versions"],
            "effective": first["runtime_info"],
            **({"build": tvm_build} if tvm_build else {}),
        },
        "settings": _settings(cfg, target, threads, remote, first),
        "results": results,
        "warnings": warnings,
        "roofline": {"peak": peak} if peak is not None else None,
    }
    validate(out)
    return out


def _machine_warnings(device_info: dict, threads: int, remote: bool) -> list[str]:
    """A busy or oversubscribed host, said before any number is read."""
    warnings: list[str] = []
    load = device_info.get("load_average_1m")
    if not remote and load is not None and load > 0.5 * device_info["usable_cpus"]:
        warnings.append(
            f"the machine was busy when bench started (1-min load {load} on "
            f"{device_info['usable_cpus']} CPUs): timings are noisy; re-run on an idle machine"
        )
    if not remote and threads > device_info["usable_cpus"]:
        warnings.append(
            f"--threads {threads} exceeds the {device_info['usable_cpus']} usable CPUs (oversubscribed)"
        )
    return warnings


def _measure_batches(cfg: BenchConfig, target, threads: int, progress: Callable[[str], None] | None) -> list[dict]:
    """One fresh child process per batch (its raw latencies and memory)."""
    loop = LoopConfig(
        warmup_s=cfg.warmup_s,
        duration_s=cfg.duration_s,
        min_iters=cfg.min_iters,
        chunk=16 if cfg.device.startswith("rpc://") else 1,
    )
    children = []
    for b in cfg.batches:
        if progress:
            progress(
                f"batch {b}: measuring in a fresh process ({cfg.runtime}, {cfg.device}, {threads} threads)"
            )
        spec = SessionSpec(
            runtime=cfg.runtime,
            model=target.path,
            device=cfg.device,
            batch=b,
            threads=threads,
            streams=cfg.streams,
            precision=cfg.precision,
            input_size=cfg.input_size,
            inputs=target.inputs,
        )
        children.append(run_child(spec, loop, cfg.child_timeout_s))
    return children


def _batch_result(c: dict, st, target, peak: dict | None, remote: bool) -> dict:
    """One `results[]` entry: latency statistics, throughput, memory and the roofline bound."""
    b, n = c["batch"], len(c["latencies_ms"])
    r = {
        "batch": b,
        "latency_ms": st.as_dict(),
        "cov": st.cov,
        "throughput_items_per_s": throughput_items_per_s(b, n, sum(c["latencies_ms"]) / 1e3),
        "throughput_batches_per_s": throughput_items_per_s(1, n, sum(c["latencies_ms"]) / 1e3),
        "peak_memory_mib": None if remote else c["peak_memory_mib"],
        "baseline_rss_mib": c["baseline_rss_mib"],
        "first_inference_ms": c["first_inference_ms"],
        "load_ms": c["load_ms"],
        "iterations": n,
        "measured_s": c["measured_wall_s"],
        "warmup_iterations": c["warmup_iterations"],
        "inputs": c["inputs"],
        "samples_ms": c["latencies_ms"][:: _stride(n)],
        "samples_stride": _stride(n),
    }
    if "gpu_memory" in c:
        r["gpu_memory"] = c["gpu_memory"]
    if peak is not None:
        cost, source = _cost(target, c)
        if cost is not None:
            rl = roofline(cost, peak)
            r["roofline"] = {
                **rl.as_dict(),
                "achieved_fraction": rl.achieved(st.median),
                "gflops": cost.flops / 1e9,
                "min_mbytes": cost.min_bytes / 1e6,
                "cost_source": source,
                "uncounted_nodes": len(cost.uncounted),
            }
        else:
            r["roofline"] = None
            r["roofline_missing"] = source
    return r


def _batch_warnings(c: dict, st) -> list[str]:
    """Noisy samples, or a first inference that dominates a short-lived application."""
    b, out = c["batch"], []
    if st.cov > HIGH_COV:
        out.append(
            f"batch {b}: CoV {st.cov:.0%} is high (noisy machine or throttling); trust the median, "
            "re-run on an idle machine"
        )
    if c["first_inference_ms"] > max(FIRST_DOMINATES * st.median, FIRST_DOMINATES_MIN_MS):
        out.append(
            f"batch {b}: the first inference took {c['first_inference_ms']:.1f} ms, "
            f"{c['first_inference_ms'] / st.median:.0f}× the median: an application that runs "
            "a few inferences per start is dominated by it"
        )
    return out


def _settings(cfg: BenchConfig, target, threads: int, remote: bool, first: dict) -> dict:
    """The `settings` block: what was asked for and how each figure was measured."""
    return {
        "target": cfg.target,
        "model": target.as_dict(),
        "device": cfg.device,
        "threads": threads,
        "streams": cfg.streams,
        "precision": cfg.precision,
        "batches": list(cfg.batches),
        "warmup_s": cfg.warmup_s,
        "duration_s": cfg.duration_s,
        "min_iters": cfg.min_iters,
        "input_size": cfg.input_size,
        "timing": timing_method(cfg.runtime, cfg.device),
        "memory_method": "not measured on a remote board (the child only drives it over RPC)"
        if remote
        else first["memory_method"],
        "throughput_method": "batch × iterations / sum of measured latencies (sequential, one stream)",
        "process": "one fresh child process per batch (python -m edgedet.bench.child)",
    }
