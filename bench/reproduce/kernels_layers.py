"""Per-layer rows of `edgedet reproduce kernels` in every runtime, and their roofline fractions.

For each QuadraNet25-t QuadraConv shape (C, H, k) and each thread count: fused vs decomposed vs
grouped in one runtime, interleaved rounds, medians (`kernels.layer_row`):
  openvino  `kernels.measure_layers` (CPU plugin, INFERENCE_NUM_THREADS);
  tvm       `kernels_tvm` (Relax VM on this host), one child process per thread count with
            TVM_NUM_THREADS set before TVM starts its pool;
  torch     `kernels_torch` (eager, `torch.set_num_threads`, inference mode).
Each row then gets `roofline`: per variant, the bound max(FLOPs / peak GFLOP/s, bytes / copy
bandwidth) of `bench.roofline` from the analytic FLOPs and bytes of `kernels.layer_cost`, and
the fraction of it the measured time reaches, against the peaks `edgedet hostinfo` measures
(its JSON via `--hostinfo`, else measured here for a second per thread count).

Child entry (TVM): `python -m edgedet.bench.reproduce.kernels_layers --shapes JSON --threads N
--rounds R --inner I --out PATH`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from edgedet.bench import hostinfo as host
from edgedet.bench.reproduce import kernels_torch, kernels_tvm
from edgedet.bench.reproduce.kernels import geomean, layer_data, layer_row, measure_layers, weight_bytes
from edgedet.bench.roofline import GraphCost, roofline
from edgedet.errors import EdgedetError

RUNTIMES = ("openvino", "tvm", "torch")
Shape = tuple[int, int, int, int]  # C, H, k, stride


def _stride1(shapes: list[Shape]) -> list[Shape]:
    return [s for s in shapes if s[3] == 1]


def measure_torch(shapes: list[Shape], threads: int, rounds: int, inner: int, seed: int = 0) -> list[dict]:
    """PyTorch eager rows at `threads` intra-op threads (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with torch.inference_mode():
            for c, h, k, _ in _stride1(shapes):
                x, weights = layer_data(c, h, k, seed)
                runners = kernels_torch.variants(c, h, k, weights, x)
                rows.append(layer_row("torch", c, h, k, threads, runners, x, weights, rounds, inner))
    finally:
        torch.set_num_threads(prev)
    return rows


def measure_tvm_here(shapes: list[Shape], threads: int, rounds: int, inner: int, seed: int = 0) -> list[dict]:
    """TVM rows in this process, whose pool TVM_NUM_THREADS (= `threads`) sized."""
    if os.environ.get("TVM_NUM_THREADS") != str(threads):
        raise EdgedetError(f"TVM rows at {threads} threads need TVM_NUM_THREADS={threads} before TVM starts")
    rows = []
    for c, h, k, _ in _stride1(shapes):
        x, weights = layer_data(c, h, k, seed)
        runners = kernels_tvm.variants(c, h, k, weights, x)
        rows.append(layer_row("tvm", c, h, k, threads, runners, x, weights, rounds, inner))
    return rows


def measure_tvm(shapes: list[Shape], threads: int, rounds: int, inner: int, seed: int = 0) -> list[dict]:
    """TVM rows at `threads`, measured in a fresh child process (TVM reads its thread count once)."""
    from edgedet.exporters import tvm as tx

    tx.require_tvm()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "edgedet.bench.reproduce.kernels_layers", "--shapes",
               json.dumps([list(s) for s in shapes]), "--threads", str(threads), "--rounds", str(rounds),
               "--inner", str(inner), "--seed", str(seed), "--out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TVM_NUM_THREADS": str(threads)})
        if res.returncode != 0 or not out.exists():
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgedetError(f"TVM layer measurement at {threads} thread(s) failed: {tail}")
        return json.loads(out.read_text())


def measure(runtime: str, shapes: list[Shape], threads: int, rounds: int, inner: int) -> list[dict]:
    """The rows of one runtime at one thread count."""
    if runtime == "openvino":
        return measure_layers(shapes, threads, rounds, inner)
    if runtime == "tvm":
        return measure_tvm(shapes, threads, rounds, inner)
    if runtime == "torch":
        return measure_torch(shapes, threads, rounds, inner)
    raise EdgedetError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")


def peaks(threads: list[int], hostinfo_path: Path | None) -> dict[int, dict]:
    """thread count → hostinfo peak entry {threads, gemm_gflops, copy_gbps, source}."""
    info = None
    if hostinfo_path is not None:
        try:
            info = json.loads(Path(hostinfo_path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgedetError(f"cannot read hostinfo {hostinfo_path}: {e}") from None
    out = {}
    for t in threads:
        p = host.peak_for(info, t) if info else None
        if p is not None:
            out[t] = {**p, "source": str(hostinfo_path)}
        else:
            prev = torch.get_num_threads()
            out[t] = {**host.measure_peak(t, seconds=1.0).__dict__,
                      "source": "measured here for 1 s (edgedet hostinfo measures it properly)"}
            torch.set_num_threads(prev)
    return out


def add_roofline(row: dict, peak: dict) -> None:
    """Set `row["roofline"]`: per variant the roofline bound (ms), what bounds it and the fraction
    of it the measured time reaches (1.0 = the machine's limit), against `peak`; and
    `fused_ceiling_speedup`, best decomposed time over the fused roofline bound: the most any
    fused kernel could gain over the measured decomposed form on this machine."""
    wbytes = weight_bytes(row["shape"][1], row["kernel"])
    bound, by, frac = {}, {}, {}
    for n, ms in row["latency_ms"].items():
        r = roofline(GraphCost(flops=row["flops"][n], weight_bytes=wbytes, io_bytes=row["bytes"][n] - wbytes), peak)
        bound[n], by[n], frac[n] = r.bound_ms, r.bound_by, r.achieved(ms)
    row["roofline"] = {"bound_ms": bound, "bound_by": by, "fraction": frac, "peak": peak,
                       "fused_ceiling_speedup": row["latency_ms"][row["best_decomposed"]] / bound["fused"]}


def k7_geomeans(rows: list[dict], value=lambda r: r["speedup"]) -> dict[str, dict[str, float | None]]:
    """runtime → {threads (str) → geomean of `value(row)` (default: the speedup) over its k=7 rows}."""
    out: dict[str, dict[str, float | None]] = {}
    for r in rows:
        if r["kernel"] == 7:
            out.setdefault(r["runtime"], {}).setdefault(str(r["threads"]), [])
            out[r["runtime"]][str(r["threads"])].append(value(r))
    return {rt: {t: geomean(v) for t, v in by_t.items()} for rt, by_t in out.items()}


def _main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="TVM per-layer rows at one thread count (child of reproduce kernels)")
    ap.add_argument("--shapes", required=True, help="JSON list of [C, H, k, stride]")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--inner", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s) for s in json.loads(a.shapes)]
    rows = measure_tvm_here(shapes, a.threads, a.rounds, a.inner, a.seed)
    a.out.write_text(json.dumps(rows))


if __name__ == "__main__":
    try:
        _main()
    except EdgedetError as e:
        print(f"edgedet: error: {e}", file=sys.stderr)
        sys.exit(2)
