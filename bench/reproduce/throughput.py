"""`edgedet reproduce throughput`: the QuadraNet paper's Table I in spirit, on this machine.

QuadraNet25-t and QuadraNet36-t against the ConvNet, SwinNet and HorNet baselines rebuilt at
the FLOPs of QuadraNet25-t (width and third-stage depth chosen to match within a few %),
each exported to ONNX and OpenVINO IR (f32) and measured by `edgedet bench` through ONNX
Runtime and OpenVINO — QuadraNet25-t also with edgedet's fused QuadraConv OpenVINO op — in
interleaved rounds: params, GFLOPs, latency at batch 1, throughput at batch 32, peak memory,
and the fraction of the roofline bound reached. (The paper reports 1.35–1.57× the
throughput of HorNet / Swin on an A100; this is a CPU.)
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgedet.bench import hostinfo as host
from edgedet.bench.reproduce import throughput_ceiling as ceiling
from edgedet.bench.reproduce import throughput_nodes
from edgedet.bench.reproduce.kernels import node_type_ms
from edgedet.bench.reproduce.model_files import ModelFiles, build
from edgedet.bench.runner import BenchConfig, run_bench
from edgedet.exporters.pipeline import ExportRequest, export_artifact
from edgedet.io.atomic import atomic_output
from edgedet.models import create
from edgedet.models.complexity import count_flops

SCHEMA_VERSION = 1
BASELINES = ("convnet", "swinnet", "hornet")
RUNTIMES = ("onnxruntime", "openvino")
WIDTHS = (48, 64, 80)  # multiples of 16: Swin's heads (width/32) must divide every stage width
REFERENCE = "quadranet25-t"
CACHE_COPY_MIB = 1  # the per-node floors' in-cache copy: 1 MiB source + 1 MiB destination, L2-sized
WIDTH_TOLERANCE = 0.03  # leave width 64 only when it cannot match the FLOPs within 3%


def match_flops(kind: str, target_gflops: float, input_size: int = 224) -> tuple[dict, float]:
    """(overrides, GFLOPs) of baseline `kind` closest to `target_gflops`. FLOPs are linear in each
    stage's depth at a fixed width, so three small counts per width give the cost of a stage-2 and a
    stage-3 block; the paper's width 64 is kept whenever it matches within WIDTH_TOLERANCE."""

    def gflops(w: int, d2: int, d3: int) -> float:
        return count_flops(create(kind, width=w, depths=(2, d2, d3, 2)), input_size) / 1e9

    best = None
    for w in WIDTHS:
        base = gflops(w, 3, 1)
        b3, b2 = gflops(w, 3, 2) - base, gflops(w, 4, 1) - base
        for d2 in (2, 3, 4):
            d3 = max(1, round(1 + (target_gflops - base - (d2 - 3) * b2) / b3))
            g = base + (d2 - 3) * b2 + (d3 - 1) * b3
            err = abs(g / target_gflops - 1)
            score = err + (0.0 if w == 64 else WIDTH_TOLERANCE) + (0.0 if d2 == 3 else 0.002)
            if best is None or score < best[0]:
                best = (score, {"width": w, "depths": [2, d2, d3, 2]}, g)
    return best[1], best[2]


@dataclass(frozen=True)
class Variant:
    """One measured cell: a model file on a runtime (`fused`: OpenVINO with edgedet's
    QuadraConv extension op instead of the three-convolution lowering)."""

    name: str
    runtime: str
    target: str
    files: ModelFiles
    fused: bool = False


def _bench(v: Variant, cfg: dict, hostinfo_path: str) -> dict:
    r = run_bench(
        BenchConfig(
            target=v.target,
            runtime=v.runtime,
            batches=cfg["batches"],
            threads=cfg["threads"],
            streams=1,
            precision="fp32",
            warmup_s=cfg["warmup_s"],
            duration_s=cfg["duration_s"],
            min_iters=cfg["min_iters"],
            input_size=cfg["input_size"],
            hostinfo_path=hostinfo_path,
        )
    )
    b1, bn = r["results"][0], r["results"][-1]
    return {
        "name": v.name,
        "model": v.files.name,
        "overrides": v.files.overrides,
        "runtime": v.runtime,
        "quadconv": ("fused edgedet.QuadraConv (OpenVINO extension)" if v.fused
                     else "TorchScript export: one grouped conv with 3C outputs, slices, Mul + Add"),
        "runtime_version": r["runtime"]["version"],
        "params_m": v.files.params / 1e6,
        "gflops": v.files.gflops,
        "latency_b1_ms": b1["latency_ms"]["median"],
        "latency_b1_cov": b1["cov"],
        "throughput_batch": bn["batch"],
        "throughput_items_per_s": bn["throughput_items_per_s"],
        "peak_memory_mib": bn["peak_memory_mib"],
        "roofline_fraction_b1": (b1.get("roofline") or {}).get("achieved_fraction"),
        "roofline_fraction_bn": (bn.get("roofline") or {}).get("achieved_fraction"),
        "warnings": r["warnings"],
    }


def _plan(size: int, log) -> tuple[float, list[tuple[str, str, dict]]]:
    """(reference GFLOPs, [(model, tag, overrides)]): the two QuadraNets and the FLOPs-matched baselines."""
    target = count_flops(create(REFERENCE), size) / 1e9
    plan = [("quadranet25-t", "quadranet25-t", {}), ("quadranet36-t", "quadranet36-t", {})]
    for kind in BASELINES:
        overrides, g = match_flops(kind, target, size)
        log(f"{kind}: width {overrides['width']}, depths {overrides['depths']} → {g:.3f} GFLOPs "
            f"({g / target - 1:+.1%} vs {REFERENCE} {target:.3f})")
        plan.append((kind, f"{kind}-matched", overrides))
    return target, plan


def _variants(plan: list[tuple[str, str, dict]], folder: str, size: int, runtimes: tuple[str, ...],
              log) -> list[Variant]:
    """ONNX Runtime and OpenVINO cells of every model, plus OpenVINO with the fused op for the
    reference (exported by `edgedet export`'s pipeline, parity-checked, extension beside the IR)."""
    out = []
    for name, tag, overrides in plan:
        log(f"exporting {tag} to ONNX + OpenVINO IR")
        files = build(name, folder, input_size=size, tag=tag, **overrides)
        out += [Variant(tag, rt, files.xml if rt == "openvino" else files.onnx, files) for rt in runtimes]
        if name == REFERENCE and "openvino" in runtimes:
            log(f"exporting {tag} to OpenVINO with the fused edgedet.QuadraConv op")
            art = export_artifact(ExportRequest(model=name, format="openvino", out=Path(folder) / f"{tag}-fused",
                                                dynamic_batch=True, input_size=size))
            out.append(Variant(f"{tag} (fused)", "openvino", str(art.out / "model.xml"), files, fused=True))
    return out


def _median_row(rows: list[dict]) -> dict:
    """The last round's row with the timing fields replaced by their medians over the rounds."""
    keys = ("latency_b1_ms", "throughput_items_per_s", "peak_memory_mib", "roofline_fraction_b1",
            "roofline_fraction_bn")
    med = {k: statistics.median(r[k] for r in rows) if all(r[k] is not None for r in rows) else None
           for k in keys}
    return rows[-1] | med | {"rounds_items_per_s": [r["throughput_items_per_s"] for r in rows]}


def _ratios(per_round: list[dict[str, dict]], runtime: str) -> dict[str, float]:
    """Median over rounds of each round's QuadraNet25-t / baseline throughput ratio."""
    refs = [REFERENCE] + ([f"{REFERENCE} (fused)"] if runtime == "openvino" else [])
    out = {}
    for ref in refs:
        for k in BASELINES:
            num, den = (ref, runtime), (f"{k}-matched", runtime)
            vals = [rd[num]["throughput_items_per_s"] / rd[den]["throughput_items_per_s"] for rd in per_round]
            out[f"{ref} / {k}"] = statistics.median(vals)
    return out


def _profile(variants: list[Variant], cfg: dict) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """OpenVINO per-node-type milliseconds of every OpenVINO cell at the throughput batch, and the
    fused QuadraNet25-t's per-node records (time, bytes, FLOPs: `throughput_nodes`)."""
    import numpy as np

    bn, size = cfg["batches"][-1], cfg["input_size"]
    x = np.random.default_rng(0).random((bn, 3, size, size), dtype=np.float32)
    types = {v.name: node_type_ms(Path(v.target), {0: x}, cfg["threads"], runs=2)
             for v in variants if v.runtime == "openvino"}
    fused = [v for v in variants if v.runtime == "openvino" and v.name == f"{REFERENCE} (fused)"]
    nodes = throughput_nodes.node_records(Path(fused[0].target), {0: x}, cfg["threads"], runs=2) if fused else []
    return types, nodes


def _median_nodes(rounds: list[list[dict]]) -> list[dict]:
    """The first round's node records with each node's time the median over the rounds."""
    times: dict[str, list[float]] = {}
    for recs in rounds:
        for r in recs:
            times.setdefault(r["name"], []).append(r["ms"])
    return [r | {"ms": statistics.median(times[r["name"]])} for r in rounds[0]] if rounds else []


def _ceiling(rows: list[dict], profiles: list[dict[str, dict[str, float]]], nodes: list[list[dict]],
             peak: dict, cache_copy_gbps: float | None = None) -> dict | None:
    """Amdahl, roofline and per-node ceilings of the fused QuadraNet25-t against each baseline (OpenVINO)."""
    by = {r["name"]: r for r in rows if r["runtime"] == "openvino"}
    ref = f"{REFERENCE} (fused)"
    if ref not in by or not profiles:
        return None
    med = {name: ceiling.median_profile([p[name] for p in profiles]) for name in profiles[0]}
    baselines = {k: by[f"{k}-matched"] for k in BASELINES}
    out = ceiling.ceilings(by[ref], med[ref], baselines)
    out["node_type_shares"] = {name: {k: v for k, v in ceiling.shares(p).items() if v >= 0.005}
                               for name, p in med.items()}
    if nodes and nodes[0]:
        out = ceiling.add_per_node(out, by[ref], _median_nodes(nodes), peak, baselines, cache_copy_gbps)
    return out


def run(cfg: dict, log=print) -> dict:
    """Every cell measured once per round, rounds interleaved (`cfg["rounds"]`), medians."""
    import torch

    torch.set_num_threads(min(2, cfg["threads"]))
    size, rounds = cfg["input_size"], cfg.get("rounds", 3)
    runtimes = tuple(cfg.get("runtimes", RUNTIMES))
    target, plan = _plan(size, log)
    with tempfile.TemporaryDirectory(prefix="edgedet-throughput-") as tmp:
        log(f"measuring this machine's peaks at {cfg['threads']} threads for the roofline")
        peak = host.measure_peak(cfg["threads"], seconds=1.0)
        cache_copy = host.measure_peak(cfg["threads"], seconds=1.0, copy_mib=CACHE_COPY_MIB).copy_gbps
        hostinfo_path = os.path.join(tmp, "hostinfo.json")
        with open(hostinfo_path, "w") as f:
            json.dump({"schema_version": host.HOSTINFO_SCHEMA_VERSION, "peaks": [peak.__dict__]}, f)
        variants = _variants(plan, tmp, size, runtimes, log)
        load_before = os.getloadavg()
        per_round: list[dict[tuple[str, str], dict]] = []
        profiles: list[dict[str, dict[str, float]]] = []
        nodes: list[list[dict]] = []
        for i in range(rounds):
            log(f"round {i + 1}/{rounds}: {len(variants)} cells, batches {cfg['batches']}")
            per_round.append({(v.name, v.runtime): _bench(v, cfg, hostinfo_path) for v in variants})
            types, recs = _profile(variants, cfg)
            profiles.append(types)
            nodes.append(recs)
        load_after = os.getloadavg()
    rows = [_median_row([rd[(v.name, v.runtime)] for rd in per_round]) for v in variants]
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": "throughput",
        "device": host.fingerprint(),
        "reference_gflops": target,
        "peak": peak.__dict__,
        "settings": cfg,
        "method": f"{rounds} interleaved rounds (every cell once per round), medians; ratios: median of the "
                  "per-round ratios",
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "rows": rows,
        "throughput_ratios": {rt: _ratios(per_round, rt) for rt in runtimes},
        "cache_copy_gbps": cache_copy,
        "ceiling": _ceiling(rows, profiles, nodes, peak.__dict__, cache_copy),
        "paper": "QuadraNet reports 1.35–1.57× the throughput of HorNet / Swin at matched FLOPs on an A100",
    }


def plot_throughput(res: dict, path: str) -> None:
    """Bars: batch-N throughput of every model per runtime (medians; whiskers: min and max round)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional plotting stack, imported only to draw

    runtimes = res["settings"].get("runtimes", RUNTIMES)
    names = list(dict.fromkeys(r["name"] for r in res["rows"]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(runtimes)
    for j, rt in enumerate(runtimes):
        by = {r["name"]: r for r in res["rows"] if r["runtime"] == rt}
        present = [n for n in names if n in by]
        med = [by[n]["throughput_items_per_s"] for n in present]
        lo = [by[n]["throughput_items_per_s"] - min(by[n]["rounds_items_per_s"]) for n in present]
        hi = [max(by[n]["rounds_items_per_s"]) - by[n]["throughput_items_per_s"] for n in present]
        ax.bar([names.index(n) + j * width for n in present], med, width, yerr=[lo, hi], capsize=3, label=rt)
    ax.set_xticks([i + width / 2 for i in range(len(names))], names, rotation=20, ha="right", fontsize=8)
    bn = res["settings"]["batches"][-1]
    ax.set_ylabel(f"images/s at batch {bn}")
    ax.set_title(f"measured: {res['device']['cpu_model']}, {res['settings']['threads']} threads, fp32, "
                 f"{res['settings']['input_size']}², matched FLOPs", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
