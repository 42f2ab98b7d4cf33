"""The fresh child process that loads and measures one model at one batch:
`python -m edgedet.bench.child SPEC.json OUT.json`.

It imports the runtime, records its RSS baseline, loads the model, runs the timing loop and
writes raw latencies + memory to OUT.json (atomically). A user error becomes
`{"error": "..."}` and exit code 2, so the parent can print one line.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from edgedet.bench.memory import MIB, hwm_bytes, method, reset_hwm, rss_bytes
from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.runtimes import SessionSpec, first_line, module
from edgedet.runtimes.timing import LoopConfig, time_loop


def measure(spec: SessionSpec, loop: LoopConfig) -> dict:
    rt = module(spec.runtime)
    why = rt.missing(spec.device)
    if why:
        raise EdgedetError(f"--runtime {spec.runtime} cannot run here: {why}")
    rt.prepare_env(spec)
    rt.import_runtime()
    import numpy  # noqa: F401  (inputs are numpy arrays: part of the baseline, not of the model)

    gc.collect()
    baseline = rss_bytes()
    was_reset = reset_hwm()
    t0 = time.perf_counter()
    session = rt.open(spec)
    load_ms = (time.perf_counter() - t0) * 1e3
    res = time_loop(session, loop)
    peak = hwm_bytes()
    out = {
        "pid": os.getpid(),
        "batch": spec.batch,
        "inputs": {k: list(v) for k, v in session.inputs.items()},
        "load_ms": load_ms,
        "first_inference_ms": res.first_inference_ms,
        "warmup_iterations": res.warmup_iters,
        "warmup_s": res.warmup_s,
        "measured_wall_s": res.wall_s,
        "latencies_ms": res.latencies_ms,
        "baseline_rss_mib": baseline / MIB,
        "peak_rss_mib": peak / MIB,
        "peak_memory_mib": max(0.0, (peak - baseline) / MIB),
        "memory_method": method(was_reset),
        "runtime_info": session.info,
        "versions": rt.versions(),
    }
    gpu = session.memory()
    if gpu:
        out["gpu_memory"] = gpu
    cost = session.cost()
    if cost:
        out["cost"] = cost
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m edgedet.bench.child SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec_path, out_path = argv
    with open(spec_path) as f:
        raw = json.load(f)
    try:
        result = measure(SessionSpec.from_dict(raw["session"]), LoopConfig(**raw["loop"]))
    except EdgedetError as e:
        write_json_atomic(out_path, {"error": str(e)})
        return 2
    except MemoryError:
        write_json_atomic(out_path, {"error": f"out of memory while measuring batch {raw['session'].get('batch')}"})
        return 1
    except Exception as e:  # a runtime failing mid-run: report it in one line, keep the trace on stderr
        import traceback

        traceback.print_exc()
        write_json_atomic(
            out_path, {"error": f"{raw['session']['runtime']} failed: {type(e).__name__}: {first_line(e)}"}
        )
        return 1
    write_json_atomic(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
