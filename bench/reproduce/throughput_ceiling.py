"""How high QuadraNet25-t's throughput ratio over a baseline can go on this CPU, from measurements.

Two ceilings for the model's batch-N throughput `tp` (images/s), each divided by a baseline's
measured throughput to give the largest ratio QuadraNet25-t could reach against it:
  amdahl    tp / dense_share: every node but the dense GEMM-like ones (OpenVINO `FullyConnected`,
            `Convolution`, `MatMul`: oneDNN's GEMM kernels, which every baseline uses too) takes
            no time at all; the share comes from the CPU plugin's per-node counters (PERF_COUNT);
  roofline  tp / roofline_fraction: the whole model runs at the machine's measured GEMM peak
            (or copy bandwidth, whichever bounds it) — no execution on this CPU can beat it;
  per node  tp · T / T_floor: the dense nodes at their measured time (as oneDNN runs them), every
            other node at its own roofline floor max(bytes / bandwidth, flops / peak) from its
            tensor sizes (`throughput_nodes`), never above its measured time. The bandwidth is the
            best of hostinfo's copy rate (a 256 MiB array, DRAM) and an in-cache copy rate (the
            nodes' tensors are 0.1–13 MB and mostly stay in L2/L3), the peak the best of hostinfo's
            GEMM rate and the rate the model's own dense nodes reached, so the floors are low
            and the ceiling is generous. A node
            the export could remove still costs its floor here: it bounds what making each
            remaining node as fast as the memory allows would give, not what a different graph
            would.
The first and third assume OpenVINO's GEMMs as they run; the second assumes nothing about software.
"""

from __future__ import annotations

import statistics

DENSE_NODE_TYPES = ("FullyConnected", "Convolution", "MatMul")


def shares(profile_ms: dict[str, float]) -> dict[str, float]:
    """Node type → fraction of the summed per-node time, largest first."""
    total = sum(profile_ms.values())
    if total <= 0:
        return {}
    return dict(sorted(((k, v / total) for k, v in profile_ms.items()), key=lambda kv: -kv[1]))


def dense_share(profile_ms: dict[str, float]) -> float:
    """Fraction of the per-node time spent in dense GEMM-like nodes."""
    s = shares(profile_ms)
    return sum(s.get(t, 0.0) for t in DENSE_NODE_TYPES)


def median_profile(profiles: list[dict[str, float]]) -> dict[str, float]:
    """Per node type, the median over rounds of its milliseconds (0 where a round lacks it)."""
    keys = dict.fromkeys(k for p in profiles for k in p)
    return {k: statistics.median(p.get(k, 0.0) for p in profiles) for k in keys}


def ceilings(ref: dict, ref_profile_ms: dict[str, float], baselines: dict[str, dict]) -> dict:
    """The two ceilings of `ref` (a throughput row) against each baseline row, with what they rest on."""
    tp = ref["throughput_items_per_s"]
    share = dense_share(ref_profile_ms)
    frac = ref.get("roofline_fraction_bn")
    amdahl_tp = tp / share if share > 0 else None
    roofline_tp = tp / frac if frac else None
    out = {"model": ref["name"], "throughput_items_per_s": tp, "dense_node_types": list(DENSE_NODE_TYPES),
           "dense_share": share, "roofline_fraction_bn": frac,
           "amdahl_ceiling_items_per_s": amdahl_tp, "roofline_ceiling_items_per_s": roofline_tp,
           "measured_ratio": {}, "amdahl_max_ratio": {}, "roofline_max_ratio": {}}
    for name, row in baselines.items():
        base = row["throughput_items_per_s"]
        out["measured_ratio"][name] = tp / base
        out["amdahl_max_ratio"][name] = amdahl_tp / base if amdahl_tp else None
        out["roofline_max_ratio"][name] = roofline_tp / base if roofline_tp else None
    return out


def node_floor_ms(node: dict, peak: dict) -> float:
    """A node's roofline floor in ms: max(bytes / copy bandwidth, flops / GEMM peak)."""
    return max(node["bytes"] / (peak["copy_gbps"] * 1e9), node["flops"] / (peak["gemm_gflops"] * 1e9)) * 1e3


def effective_peak(peak: dict, nodes: list[dict], cache_copy_gbps: float | None = None) -> dict:
    """The bandwidth and FLOP rate the floors use: each the best of what was measured —
    hostinfo's copy and GEMM rates, the in-cache copy rate, the dense nodes' own GEMM rate."""
    dense = [n for n in nodes if n["type"] in DENSE_NODE_TYPES and n["ms"] > 0]
    dense_ms = sum(n["ms"] for n in dense)
    dense_gflops = sum(n["flops"] for n in dense) / dense_ms / 1e6 if dense_ms > 0 else 0.0
    return {"copy_gbps": max(peak["copy_gbps"], cache_copy_gbps or 0.0),
            "gemm_gflops": max(peak["gemm_gflops"], dense_gflops),
            "hostinfo_copy_gbps": peak["copy_gbps"], "cache_copy_gbps": cache_copy_gbps,
            "hostinfo_gemm_gflops": peak["gemm_gflops"], "dense_nodes_gflops": dense_gflops}


def per_node_bound(nodes: list[dict], peak: dict) -> dict:
    """Measured and bound per-inference time of `nodes` (records with type, ms, bytes, flops):
    dense nodes at their time, the others at min(time, floor); totals and a per-type table."""
    by_type: dict[str, dict] = {}
    clamped_ms = 0.0
    clamped = 0
    for n in nodes:
        dense = n["type"] in DENSE_NODE_TYPES
        floor = n["ms"] if dense else node_floor_ms(n, peak)
        bound = n["ms"] if dense else min(n["ms"], floor)
        if not dense and floor > n["ms"]:
            clamped, clamped_ms = clamped + 1, clamped_ms + n["ms"]
        t = by_type.setdefault(n["type"], {"count": 0, "ms": 0.0, "bound_ms": 0.0, "bytes": 0, "flops": 0})
        t["count"] += 1
        t["ms"] += n["ms"]
        t["bound_ms"] += bound
        t["bytes"] += n["bytes"]
        t["flops"] += n["flops"]
    measured = sum(t["ms"] for t in by_type.values())
    bound = sum(t["bound_ms"] for t in by_type.values())
    return {"measured_ms": measured, "bound_ms": bound, "speedup": measured / bound if bound > 0 else None,
            "nodes_faster_than_floor": clamped, "nodes_faster_than_floor_ms": clamped_ms,
            "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["ms"]))}


def add_per_node(out: dict, ref: dict, nodes: list[dict], peak: dict, baselines: dict[str, dict],
                 cache_copy_gbps: float | None = None) -> dict:
    """`ceilings`' result plus the per-node bound (`per_node`, at `effective_peak`) and
    `per_node_max_ratio` per baseline."""
    eff = effective_peak(peak, nodes, cache_copy_gbps)
    pn = per_node_bound(nodes, eff)
    tp = ref["throughput_items_per_s"] * pn["speedup"] if pn["speedup"] else None
    out["per_node"] = pn | {"peak": eff}
    out["per_node_ceiling_items_per_s"] = tp
    out["per_node_max_ratio"] = {name: (tp / row["throughput_items_per_s"] if tp else None)
                                 for name, row in baselines.items()}
    return out
