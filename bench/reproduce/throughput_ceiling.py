"""How high QuadraNet25-t's throughput ratio over a baseline can go on this CPU, from measurements.

Two ceilings for the model's batch-N throughput `tp` (images/s), each divided by a baseline's
measured throughput to give the largest ratio QuadraNet25-t could reach against it:
  amdahl    tp / dense_share: every node but the dense GEMM-like ones (OpenVINO `FullyConnected`,
            `Convolution`, `MatMul`: oneDNN's GEMM kernels, which every baseline uses too) takes
            no time at all; the share comes from the CPU plugin's per-node counters (PERF_COUNT);
  roofline  tp / roofline_fraction: the whole model runs at the machine's measured GEMM peak
            (or copy bandwidth, whichever bounds it) — no execution on this CPU can beat it.
The first assumes OpenVINO's GEMMs as they run; the second assumes nothing about software.
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
