"""The adaptation experiment of `edgedet reproduce predictor`: adapt the phone profile
`cortex-a76` to this machine's ONNX Runtime from 5 / 10 / 20 measured networks (nested:
the first 5 of the diverse order are in the 10, …) and score it on the evaluation models,
none of which is in the adaptation pool, against the unadapted profile and a full
measured profile."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgedet.nas.sampled_nets import random_space_net
from edgedet.profiles import Profile, from_document, load_profile
from edgedet.profiles.adapt import (
    adaptation_pool,
    adapted_document,
    diverse_order,
    fit_correction,
    host_timer,
    measure_rows,
)
from edgedet.profiles.host_timing import Runner, machine_info
from edgedet.profiles.measure import call_overhead_ms

BASE = "cortex-a76"


def adapted_profiles(threads: int, ns: Sequence[int], progress: bool = True) -> tuple[dict[str, Profile], dict]:
    """{label: profile} for the unadapted base and each N, plus what was measured."""
    base = load_profile(BASE)
    runner = Runner("onnxruntime", threads)
    fixed = call_overhead_ms(runner) * 1e3
    top = max(ns)
    pool = adaptation_pool(2 * top, base, random_space_net, progress)
    rows = measure_rows(pool, diverse_order([r for r, _ in pool], top), host_timer("onnxruntime", threads), progress)
    out = {f"{BASE} (unadapted)": base}
    info = machine_info()
    for n in ns:
        doc = adapted_document(base, fit_correction(rows[:n], fixed), rows[:n], runner.describe(), info,
                               f"{BASE}-adapted-{n}")
        out[f"{BASE} adapted, {n} measured"] = from_document(doc, f"<adapted {n}>")
    meta = {"base": BASE, "pool": len(pool), "fixed_us": fixed,
            # everything a correction is fitted on, so that the adaptation can be re-scored offline
            "measured": [{"name": r.name, "family": r.family, "ms": r.measured_us / 1e3, "kernels": r.n_kernels,
                          "base_per_class_us": r.per_class_us} for r in rows]}
    return out, meta


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) >= 3 else float("nan")


def score(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    p, m = np.asarray(predicted), np.asarray(measured)
    rel = (p - m) / m
    return {"n": len(m), "within10": float(np.mean(np.abs(rel) <= 0.10)), "mape": float(np.mean(np.abs(rel))),
            "mean_signed_error": float(np.mean(rel)), "spearman": spearman(p, m)}
