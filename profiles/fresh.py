"""Time one whole ONNX model in a fresh interpreter, the way `edgedet bench` measures: a new
process per model (no allocator state, no warm caches or thread pools left by earlier
models), the same runtime and thread count. Whole-network calibration of a measured
profile uses it, so the profile is centred on what `bench` reports for a model timed alone.

    python -m edgedet.profiles.fresh MODEL.onnx OUT.json RUNTIME THREADS MIN_S MIN_RUNS MAX_RUNS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict

from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.profiles.host_timing import Runner, Timing


def time_fresh(
    model_bytes: bytes,
    runtime: str,
    threads: int,
    min_s: float = 0.5,
    min_runs: int = 5,
    max_runs: int = 100,
    timeout_s: float = 600.0,
) -> Timing:
    """Timing of `model_bytes` measured in a child interpreter (see module doc)."""
    with tempfile.TemporaryDirectory(prefix="edgedet-fresh-") as d:
        mp, op = os.path.join(d, "m.onnx"), os.path.join(d, "t.json")
        with open(mp, "wb") as f:
            f.write(model_bytes)
        cmd = [sys.executable, "-m", "edgedet.profiles.fresh", mp, op, runtime, str(threads),
               str(min_s), str(min_runs), str(max_runs)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise EdgedetError(f"timing a model in a fresh process took over {timeout_s:.0f} s") from None
        if not os.path.exists(op):
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise EdgedetError(f"fresh-process timing failed: {tail[-1] if tail else proc.returncode}")
        with open(op) as f:
            doc = json.load(f)
    if "error" in doc:
        raise EdgedetError(doc["error"])
    return Timing(**doc)


def main(argv: list[str]) -> int:
    mp, op, runtime, threads, min_s, min_runs, max_runs = argv
    try:
        with open(mp, "rb") as f:
            mb = f.read()
        tm = Runner(runtime, int(threads)).time(mb, float(min_s), int(min_runs), int(max_runs))
        doc = asdict(tm)
    except Exception as e:  # reported to the parent as one line
        doc = {"error": f"{type(e).__name__}: {e}"}
    write_json_atomic(op, doc)
    return 0 if "error" not in doc else 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
