"""In-context calibration of a measured profile: single kernels timed alone are not the
kernels of a running model (ONNX Runtime adds NCHWc layout reorders around a lone conv that
a chain of convs shares; caches are warm or cold differently; every node costs a dispatch).
So a measured profile also times whole *calibration* networks, and fits one scale per
kernel class plus a per-kernel overhead so that Σ kernels matches the whole-model latency.

The calibration networks (`calibration_nets`) are random and disjoint from every model
`edgedet reproduce predictor` evaluates on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from edgedet.profiles.calibration_nets import SpaceNet, calibration_networks
from edgedet.profiles.cost import FREE_CLASSES, linear_us, variant_key
from edgedet.profiles.fresh import time_fresh
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import from_document
from edgedet.profiles.predict import kernels_of
from edgedet.runtimes import first_line


@dataclass
class ContextRow:
    """One calibration network: predicted µs per kernel class (single-kernel predictors,
    no scale, no overhead), its kernel count and its measured µs."""

    name: str
    family: str
    per_class_us: dict[str, float]
    n_kernels: int
    measured_us: float


def per_class_us(kernels: Iterable[Kernel], classes: dict,
                 price: Callable[[Kernel, str], float]) -> tuple[dict[str, float], int]:
    """Σ µs per kernel class (`variant_key` of each kernel; free classes skipped) with each
    kernel priced by `price(kernel, class key)`, and how many kernels were priced."""
    per: dict[str, float] = {}
    n = 0
    for k in kernels:
        if k.op in FREE_CLASSES:
            continue
        key = variant_key(k, classes)
        per[key] = per.get(key, 0.0) + price(k, key)
        n += 1
    return per, n


# --- the fit (pure) ---------------------------------------------------------------------------
RIDGE = 0.05  # pull of each class scale towards 1 (relative-error units)
SCALE_BOUNDS = (0.4, 2.5)
OVERHEAD_BOUNDS_US = (0.0, 30.0)


def fit_context(rows: list[ContextRow], fixed_us: float, ridge: float = RIDGE) -> tuple[dict[str, float], float]:
    """Class scales s_c and per-kernel overhead o minimising Σ_models ((F + Σ_c s_c·P_c + o·N − m) / m)²
    + ridge·Σ_c (s_c − 1)² (bounded least squares). Classes that no network uses keep scale 1."""
    from scipy.optimize import lsq_linear

    classes = sorted({c for r in rows for c, v in r.per_class_us.items() if v > 0})
    if not rows or not classes:
        return {}, 0.0
    a, b = [], []
    for r in rows:
        m = r.measured_us
        a.append([r.per_class_us.get(c, 0.0) / m for c in classes] + [r.n_kernels / m])
        b.append((m - fixed_us) / m)
    lam = math.sqrt(ridge)
    for j in range(len(classes)):
        a.append([lam if k == j else 0.0 for k in range(len(classes))] + [0.0])
        b.append(lam)
    lo = [SCALE_BOUNDS[0]] * len(classes) + [OVERHEAD_BOUNDS_US[0]]
    hi = [SCALE_BOUNDS[1]] * len(classes) + [OVERHEAD_BOUNDS_US[1]]
    sol = lsq_linear(np.array(a), np.array(b), bounds=(lo, hi))
    scales = {c: round(float(s), 4) for c, s in zip(classes, sol.x[:-1], strict=True)}
    return scales, float(sol.x[-1])


def predict_row(r: ContextRow, scales: dict[str, float], overhead_us: float, fixed_us: float) -> float:
    return fixed_us + sum(scales.get(c, 1.0) * v for c, v in r.per_class_us.items()) + overhead_us * r.n_kernels


def loo_errors(rows: list[ContextRow], fixed_us: float) -> list[float]:
    """Signed relative error of each calibration network predicted by a fit without it."""
    errs = []
    for i, r in enumerate(rows):
        scales, o = fit_context(rows[:i] + rows[i + 1:], fixed_us)
        errs.append((predict_row(r, scales, o, fixed_us) - r.measured_us) / r.measured_us)
    return errs


# --- measuring (I/O) -------------------------------------------------------------------------
def row_of(name: str, family: str, model_bytes: bytes, profile, measured_us: float) -> ContextRow:
    """Per-class single-kernel prediction of a network (no context scale, no overhead)."""
    classes = profile.predictor["classes"]
    kernels, unknown = kernels_of(model_bytes, profile)

    def price(k: Kernel, key: str) -> float:
        if key not in classes:
            raise ValueError(f"{name}: no predictor for kernel class {key!r}")
        return linear_us(classes[key], k)

    per, n = per_class_us(kernels, classes, price)
    if unknown:
        raise ValueError(f"{name}: unknown ops {unknown}")
    return ContextRow(name, family, per, n, measured_us)


def calibrate_in_context(doc: dict, runner, budget_s: float, space_net: SpaceNet, progress: bool = True,
                         max_networks: int = 60, fresh: bool = True,
                         timer: Callable[[bytes], float] | None = None) -> dict:
    """Time calibration networks for about `budget_s` seconds and return the document with
    `predictor.context_scale`, a refitted `kernel_overhead_us` and `calibration.context`.
    `space_net` draws the search-space networks of the set.
    `fresh`: each network is timed in a new interpreter, as `bench` times a model (a model
    timed after many others in one process runs faster than it will for the user).
    `timer` (bytes → µs) measures the networks instead (a TVM target: compiled, fresh child)."""
    import time

    plain = {**doc, "predictor": {k: v for k, v in doc["predictor"].items() if k != "context_scale"}}
    profile = from_document(plain, "<kernels-only profile>")
    fixed = float(doc["predictor"].get("fixed_us", 0.0))
    t0 = time.perf_counter()
    rows: list[ContextRow] = []
    for name, family, make in calibration_networks(max_networks, space_net):
        if time.perf_counter() - t0 > budget_s:
            break
        try:
            mb = make()
            if timer is not None:
                us = timer(mb)
            elif fresh:
                us = time_fresh(mb, runner.runtime, runner.threads, min_s=0.25, min_runs=5, max_runs=60).best_ms * 1e3
            else:
                us = runner.time(mb, min_s=0.25, min_runs=5, max_runs=60).best_ms * 1e3
            rows.append(row_of(name, family, mb, profile, us))
        except Exception as e:  # a network the runtime or the graph reader rejects is skipped
            if progress:
                print(f"  context: skipped {name}: {first_line(e)[:200]}", flush=True)
            continue
        if progress and len(rows) % 5 == 0:
            print(f"  context calibration: {len(rows)} networks timed, {time.perf_counter() - t0:.0f}s", flush=True)
    if len(rows) < 6:
        return doc  # too few networks to fit anything honest: keep the single-kernel predictors
    scales, overhead = fit_context(rows, fixed)
    loo = loo_errors(rows, fixed)
    node_us = float(doc["predictor"].get("kernel_overhead_us", 0.0))
    before = [(fixed + sum(r.per_class_us.values()) + r.n_kernels * node_us - r.measured_us) / r.measured_us
              for r in rows]
    out = {**doc, "predictor": {**doc["predictor"], "context_scale": scales, "kernel_overhead_us": overhead}}
    out["calibration"] = {
        **doc["calibration"],
        "context": {
            "method": "whole calibration networks timed "
            + ("each in a fresh process (as bench times a model), " if fresh else "in the profiling process, ")
            + "same runtime, threads and timing basis as the kernels; per-class scale and per-kernel "
            "overhead by bounded least squares on relative error, ridge towards scale 1",
            "timing": "fresh-process" if fresh else "in-process",
            "networks": [{"name": r.name, "family": r.family, "measured_ms": round(r.measured_us / 1e3, 4),
                          "kernels": r.n_kernels, "loo_error": round(e, 4)} for r, e in zip(rows, loo, strict=True)],
            "loo_mape": float(np.mean(np.abs(loo))),
            "loo_within10": float(np.mean([abs(e) <= 0.10 for e in loo])),
            "loo_mean_signed_error": float(np.mean(loo)),
            "mape_kernels_only": float(np.mean(np.abs(before))),
            "time_s": round(time.perf_counter() - t0, 1),
        },
    }
    return out
