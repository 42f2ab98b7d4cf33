"""Few-shot adaptation of a profile to a device it was not made on: time N whole networks on
the device (chosen for diversity from the calibration pool), then fit a correction to the
base profile — one global scale, per kernel-class scales (ridge towards the global one), a
per-kernel overhead and the runtime's per-inference cost — and write a new profile that
records what it was adapted from and its leave-one-out error on the N networks.

The correction is exact algebra on the base predictor: a roofline kernel time
`o + (C^p + M^p)^(1/p)` is homogeneous in (o, C, M), so scaling a class by s multiplies its
overhead, compute and memory scales by s; the per-kernel overhead is added to every class.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.profiles.calibration_nets import SpaceNet, calibration_networks
from edgedet.profiles.context import ContextRow, fit_context, per_class_us, predict_row
from edgedet.profiles.cost import kernel_us
from edgedet.profiles.fresh import time_fresh
from edgedet.profiles.host_timing import Runner, machine_info
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import Profile
from edgedet.profiles.measure import call_overhead_ms
from edgedet.profiles.predict import kernels_of
from edgedet.profiles.schema import SCHEMA_VERSION

ADAPT_SEED = 20_000  # the adaptation pool: calibration networks far from every evaluated seed


@dataclass
class Correction:
    """t_device ≈ fixed_us + g · Σ_c s_c · P_c + overhead_us · n_kernels (P_c: base µs)."""

    global_scale: float
    class_scale: dict[str, float]
    overhead_us: float
    fixed_us: float

    def predict(self, r: ContextRow) -> float:
        scaled = ContextRow(r.name, r.family, {c: self.global_scale * v for c, v in r.per_class_us.items()},
                            r.n_kernels, r.measured_us)
        return predict_row(scaled, self.class_scale, self.overhead_us, self.fixed_us)


def base_row(name: str, family: str, model_bytes: bytes, base: Profile, measured_us: float = 0.0) -> ContextRow:
    """Per-class latency the base profile predicts for a network (its per-inference cost left out)."""
    if base.predictor["type"] != "roofline":
        raise EdgedetError(f"--adapt needs a predicted (roofline) base profile; '{base.id}' is {base.kind}")
    classes = base.predictor["classes"]
    kernels, unknown = kernels_of(model_bytes, base)
    if unknown:
        raise EdgedetError(f"{name}: op types the base profile cannot price: {', '.join(unknown)}")

    def price(k: Kernel, _key: str) -> float:
        t = kernel_us(k, base)
        if t is None:
            raise EdgedetError(f"{name}: base profile '{base.id}' has no cost for kernel class {k.op!r}")
        return t

    per, n = per_class_us(kernels, classes, price)
    return ContextRow(name, family, per, n, measured_us)


def diverse_order(rows: Sequence[ContextRow], n: int) -> list[int]:
    """Farthest-point order over (log predicted total, per-class time shares): the first n
    indices cover the pool's range of sizes and kernel mixes."""
    classes = sorted({c for r in rows for c in r.per_class_us})
    tot = np.array([max(sum(r.per_class_us.values()), 1e-9) for r in rows])
    shares = np.array([[r.per_class_us.get(c, 0.0) for c in classes] for r in rows]) / tot[:, None]
    x = np.column_stack([np.log(tot) / max(np.log(tot).std(), 1e-9), shares / max(shares.std(), 1e-9)])
    order = [int(np.argmin(np.abs(np.log(tot) - np.median(np.log(tot)))))]
    dist = np.linalg.norm(x - x[order[0]], axis=1)
    while len(order) < min(n, len(rows)):
        j = int(np.argmax(dist))
        order.append(j)
        dist = np.minimum(dist, np.linalg.norm(x - x[j], axis=1))
    return order


def fit_correction(rows: Sequence[ContextRow], fixed_us: float) -> Correction:
    """Global scale from the log-mean ratio, then per-class scales and the per-kernel overhead
    by context calibration's bounded ridge fit on the globally scaled base predictions."""
    pred = np.array([sum(r.per_class_us.values()) for r in rows])
    meas = np.array([r.measured_us - fixed_us for r in rows])
    g = float(np.exp(np.mean(np.log(np.maximum(meas, 1e-3) / np.maximum(pred, 1e-9)))))
    scaled = [ContextRow(r.name, r.family, {c: g * v for c, v in r.per_class_us.items()}, r.n_kernels,
                         r.measured_us) for r in rows]
    scales, overhead = fit_context(scaled, fixed_us)
    return Correction(g, scales, overhead, fixed_us)


def loo_errors(rows: Sequence[ContextRow], fixed_us: float) -> list[float]:
    """Signed relative error of each measured network predicted by a correction fitted without it."""
    out = []
    for i, r in enumerate(rows):
        c = fit_correction([q for j, q in enumerate(rows) if j != i], fixed_us)
        out.append((c.predict(r) - r.measured_us) / r.measured_us)
    return out


def adapted_document(base: Profile, corr: Correction, rows: Sequence[ContextRow], runtime: dict,
                     machine: dict, profile_id: str) -> dict:
    """The base document with the correction folded into its roofline classes."""
    doc = copy.deepcopy(base.doc)
    classes = doc["predictor"]["classes"]
    for key, spec in classes.items():
        s = corr.global_scale * corr.class_scale.get(key, 1.0)
        for f in ("compute_scale", "memory_scale", "spill_scale"):
            if f in spec:
                spec[f] = spec[f] * s
        spec["overhead_us"] = spec["overhead_us"] * s + corr.overhead_us
    doc["predictor"]["fixed_us"] = corr.fixed_us
    loo = loo_errors(rows, corr.fixed_us) if len(rows) >= 3 else []
    doc.update({
        "schema_version": SCHEMA_VERSION,
        "id": profile_id,
        "kind": "predicted",
        "description": f"'{base.id}' adapted to {runtime.get('name')} on {machine.get('cpu', '?')} "
                       f"from {len(rows)} whole-network measurements",
        "runtime": runtime,
        "adapted_from": {"id": base.id, "path": base.path, "runtime": base.runtime_name},
    })
    doc["hardware"] = {**doc["hardware"], "name": f"{machine.get('cpu', '?')} (roofline constants of "
                       f"'{base.id}', rescaled)", "machine": machine}
    rel = np.array(loo) if loo else np.array([np.nan])
    doc["calibration"] = {
        "method": "few-shot adaptation: global scale (log-mean ratio), per-class scales with a ridge towards "
                  "it and a per-kernel overhead (bounded least squares on relative error), per-inference "
                  "cost measured apart; error is leave-one-out over the measured networks",
        "error_basis": "leave-one-out",
        "mape": float(np.mean(np.abs(rel))) if loo else 0.0,
        "within10": float(np.mean(np.abs(rel) <= 0.10)) if loo else 0.0,
        "mean_signed_error": float(np.mean(rel)) if loo else 0.0,
        "loo_mape": float(np.mean(np.abs(rel))) if loo else 0.0,
        "lofo_mape": None,
        "lofo_note": "random calibration networks, not design families",
        "n": len(rows),
        "correction": {"global_scale": corr.global_scale, "class_scale": corr.class_scale,
                       "kernel_overhead_us": corr.overhead_us, "fixed_us": corr.fixed_us},
        "set": [{"name": r.name, "family": r.family, "kernels": r.n_kernels,
                 "measured_ms": round(r.measured_us / 1e3, 4),
                 "loo_error": round(e, 4) if loo else None}
                for r, e in zip(rows, loo or [math.nan] * len(rows), strict=True)],
    }
    return doc


def adaptation_pool(n: int, base: Profile, space_net: SpaceNet,
                    progress: bool = True) -> list[tuple[ContextRow, bytes]]:
    """`n` candidate networks (ONNX bytes) with the base profile's per-class predictions."""
    out = []
    for name, family, make in calibration_networks(n, space_net, seed=ADAPT_SEED):
        try:
            mb = make()
            out.append((base_row(name, family, mb, base), mb))
        except EdgedetError:
            raise
        except Exception as e:  # a network the exporter or graph reader rejects is skipped
            if progress:
                print(f"  adapt: skipped {name}: {str(e).strip().splitlines()[0][:160]}", flush=True)
    return out


def measure_rows(pool: Sequence[tuple[ContextRow, bytes]], order: Sequence[int],
                 timer: Callable[[bytes], float], progress: bool = True) -> list[ContextRow]:
    """Time the pool's networks in `order` on the device (`timer`: bytes → µs)."""
    rows = []
    for i in order:
        r, mb = pool[i]
        us = timer(mb)
        rows.append(ContextRow(r.name, r.family, r.per_class_us, r.n_kernels, us))
        if progress:
            print(f"  adapt: {r.name:34s} measured {us / 1e3:8.2f} ms "
                  f"(base predicts {sum(r.per_class_us.values()) / 1e3:8.2f} ms)", flush=True)
    return rows


def host_timer(runtime: str, threads: int) -> Callable[[bytes], float]:
    """µs of one inference on this machine, each network in a fresh process (as bench times it)."""

    return lambda mb: time_fresh(mb, runtime, threads, min_s=0.5, min_runs=5, max_runs=50).best_ms * 1e3


def adapt_profile(base: Profile, runtime: str, threads: int, n: int, space_net: SpaceNet,
                  profile_id: str | None = None, pool_factor: int = 3, progress: bool = True,
                  timer: Callable[[bytes], float] | None = None, runtime_doc: dict | None = None) -> dict:
    """Adapt `base` from `n` measured networks (see module doc). Default: `runtime` on this
    machine, each network in a fresh process; `timer` (bytes → µs) measures elsewhere (a
    board over TVM RPC), its per-inference cost then being part of the correction's fit."""

    if n < 3:
        raise EdgedetError(f"--measure must be at least 3 (a correction and its leave-one-out error), got {n}")
    if timer is None:
        runner = Runner(runtime, threads)
        fixed = call_overhead_ms(runner) * 1e3
        timer, runtime_doc = host_timer(runtime, threads), runner.describe()
    else:
        fixed = 0.0
    pool = adaptation_pool(max(n * pool_factor, n + 4), base, space_net, progress)
    rows = measure_rows(pool, diverse_order([r for r, _ in pool], n), timer, progress)
    corr = fit_correction(rows, fixed)
    pid = profile_id or f"{base.id}-adapted-{runtime}-t{threads}"
    return adapted_document(base, corr, rows, runtime_doc or {"name": runtime, "threads": threads},
                            machine_info(), pid)
