"""Calibrate the predicted (roofline) profiles on public whole-model latencies, with
leave-one-out error, and write profiles/<id>.json.

Each model's predicted latency is linear in the parameters θ (inverse efficiencies per op
group, memory scale, per-kernel overheads, per-inference constant):
    T_model = Σ_j θ_j · F_j(model)
so θ is fitted by least squares on log(T_pred / T_ref) (scipy), with a weak log-space
prior that keeps classes the data barely exercises near plausible values. Leave-one-out
refits everything without the held-out row.

    python -m edgedet.profiles.calibrate [DEVICE ...] [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from edgedet.arch import write_json_atomic
from edgedet.errors import EdgedetError
from edgedet.profiles.cost import spill_bytes
from edgedet.profiles.crossval import CHOICES, FitChoice, choose, family_of, mape, nested, within10
from edgedet.profiles.devices import DEVICES, DeviceSpec
from edgedet.profiles.fusion import FusionRules, fuse
from edgedet.profiles.graph import build_graph, load_model, set_batch
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import PROFILE_DIR
from edgedet.profiles.schema import SCHEMA_VERSION

# op class → (compute group, overhead group); memory_scale is shared by all classes
CLASS_GROUPS = {
    "conv": ("conv", "overhead"),
    "dwconv": ("dwconv", "dw_overhead"),
    "quadconv": ("dwconv", "dw_overhead"),
    "linear": ("linear", "overhead"),
    "matmul": ("linear", "overhead"),
    "elementwise": ("vector", "vector_overhead"),
    "pool": ("vector", "vector_overhead"),
    "globalpool": ("vector", "vector_overhead"),
    "reduce": ("vector", "vector_overhead"),
    "layernorm": ("vector", "vector_overhead"),
    "gelu": ("vector", "vector_overhead"),
    "softmax": ("vector", "vector_overhead"),
    "concat": (None, "datamove"),
    "split": (None, "datamove"),
    "transpose": (None, "datamove"),
    "slice": (None, "datamove"),
    "pad": (None, "datamove"),
    "resize": (None, "datamove"),
    "reshape": (None, "datamove"),
}
UNCALIBRATED_NOTE = {
    "quadconv": "depthwise efficiency (its three depthwise convs) + vector epilogue; "
    "not in the calibration set",
    "layernorm": "vector efficiency and shared memory scale; not in the calibration set",
    "gelu": "vector efficiency and shared memory scale; not in the calibration set",
    "softmax": "vector efficiency; not in the calibration set",
    "matmul": "linear (fully connected) efficiency; not in the calibration set",
}
PARAMS = (
    "conv",
    "conv3x3",
    "dwconv",
    "linear",
    "vector",
    "memory",
    "spill",
    "overhead",
    "dw_overhead",
    "vector_overhead",
    "datamove",
    "parallel_half",
    "fixed",
)
# prior: (value, unit); compute/memory values are 1/efficiency, overheads in µs
PRIOR = {
    "conv": 2.5,
    "conv3x3": 2.5,
    "dwconv": 8.0,
    "linear": 3.0,
    "vector": 20.0,
    "memory": 2.0,
    "spill": 1.0,
    "overhead": 10.0,
    "dw_overhead": 10.0,
    "vector_overhead": 10.0,
    "parallel_half": 1000.0,
    "datamove": 10.0,
    "fixed": 1000.0,
}
PRIOR_WEIGHT = 0.05  # per-parameter weight of log(θ/θ0) against the data residuals


def data_root() -> Path:
    env = os.environ.get("EDGEDET_REFERENCE_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for up in here.parents:
        cand = up / "shared" / "data"
        if (cand / "latency-reference").is_dir():
            return cand
        cand = up.parent / "shared" / "data"
        if (cand / "latency-reference").is_dir():
            return cand
    raise EdgedetError(
        f"reference data not found; expected {here.parents[3] / 'shared' / 'data'} "
        "(set EDGEDET_REFERENCE_DATA to the folder holding latency-reference/ and a100-reference/)"
    )


@dataclass
class Row:
    """One reference latency: model graph, batch, input size, measured/published ms."""

    model: str
    onnx: Path
    batch: int
    size: int | None
    ref_ms: float
    note: str = ""

    @property
    def key(self) -> str:
        return self.model if self.batch == 1 else f"{self.model}@b{self.batch}"


def reference_rows(spec: DeviceSpec, root: Path) -> list[Row]:
    src, _, sel = spec.calibration_source.partition(":")
    rows: list[Row] = []
    if src == "nnmeter":
        d = root / "latency-reference"
        with open(d / "nnmeter_reference.csv") as f:
            for r in csv.DictReader(f):
                if r["device"] == sel:
                    rows.append(
                        Row(
                            r["model"],
                            d / "onnx" / f"{r['model']}.onnx",
                            1,
                            None,
                            float(r["nnmeter_predicted_latency_ms"]),
                            r["graph_source"],
                        )
                    )
    else:
        d = root / "a100-reference"
        regime, _, table = sel.partition("|")
        graphs = {
            "resnet50v1.5": ("resnet50", None),
            "efficientnet-b0": ("efficientnet_b0", None),
            "efficientnet-b4": ("efficientnet_b4", None),
        }
        with open(d / "a100_dle_inference.csv") as f:
            for r in csv.DictReader(f):
                if not r["framework"].startswith(regime) or r["precision_table"] != table:
                    continue
                if r["model"] not in graphs or not r["lat_avg_ms"]:
                    continue
                name, size = graphs[r["model"]]
                rows.append(
                    Row(
                        name,
                        d / "onnx" / f"{name}.onnx",
                        int(r["batch"]),
                        size,
                        float(r["lat_avg_ms"]),
                        f"{r['gpu']}; {r['source_path']}",
                    )
                )
    if not rows:
        raise EdgedetError(f"no calibration rows for {spec.id} in {root}")
    return rows


def is_winograd(k: Kernel) -> bool:
    """3×3 stride-1 dense conv: the shape runtimes run with Winograd / special kernels."""
    return k.op == "conv" and k.kernel_size == (3, 3) and k.stride == (1, 1) and k.groups == 1


@dataclass
class ModelFeatures:
    """Per-kernel roofline terms of one model (µs at 100% efficiency) and group indices."""

    comp: np.ndarray  # compute time at peak, per kernel
    mem: np.ndarray  # memory time at peak bandwidth, per kernel
    comp_group: np.ndarray  # index into PARAMS, or -1
    ovh_group: np.ndarray  # index into PARAMS
    out: np.ndarray  # output elements (the kernel's parallelism)
    spill: np.ndarray  # memory time of the traffic beyond the on-chip memory, at peak bandwidth


def model_features(kernels: list[Kernel], spec: DeviceSpec) -> ModelFeatures:
    hw = spec.hardware
    comp, mem, cg, og, out, spill = [], [], [], [], [], []
    onchip = float(hw.get("onchip_bytes", 0.0))
    for k in kernels:
        if k.op == "identity":
            continue
        if k.op not in CLASS_GROUPS:
            raise EdgedetError(f"calibration graph has kernel class {k.op!r} with no parameter group")
        c, o = CLASS_GROUPS[k.op]
        if k.op == "conv" and is_winograd(k):
            c = "conv3x3"
        comp.append(k.flops / (hw["peak_gflops"] * 1e3) if c else 0.0)
        mem.append((k.bytes_read + k.bytes_written) / (hw["bandwidth_gbs"] * 1e3))
        spill.append(spill_bytes(k, onchip, spec.element_bytes) / (hw["bandwidth_gbs"] * 1e3))
        cg.append(PARAMS.index(c) if c else -1)
        og.append(PARAMS.index(o))
        out.append(max(1.0, float(sum(math.prod(s) for s in k.output_shapes))))
    return ModelFeatures(*(np.array(a) for a in (comp, mem, cg, og, out, spill)))


def roofline_us(f: ModelFeatures, theta: np.ndarray, p: float) -> float:
    """Σ_k overhead + (compute^p + memory^p)^(1/p) + fixed  (p=1: sum, p→∞: max); compute
    efficiency falls as out/(out + parallel_half) when a kernel has few outputs to spread."""
    return float(roofline_stack(stack([f]), theta, p)[0])


@dataclass
class Stack:
    """Kernels of several models in one array set (`model` says whose), so a fit prices
    all models with a handful of numpy operations."""

    f: ModelFeatures
    model: np.ndarray
    n: int


def tie_map(choice: FitChoice | None) -> dict[int, int]:
    """Parameter → the parameter it shares its value with, under `choice`."""
    ties: dict[str, str] = {}
    if choice is not None and choice.tie_overheads:
        ties.update({t: "overhead" for t in TIED})
    if choice is not None and choice.tie_dw_compute:
        ties["dwconv"] = "conv"
    if choice is not None and choice.pool_compute:
        ties.update({c: "conv" for c in ("conv3x3", "dwconv", "linear", "vector")})
    return {PARAMS.index(a): PARAMS.index(b) for a, b in ties.items()}


def stack(feats: list[ModelFeatures], choice: FitChoice | None = None) -> Stack:
    names = ("comp", "mem", "comp_group", "ovh_group", "out", "spill")
    cat = [np.concatenate([getattr(f, a) for f in feats]) for a in names]
    for a, b in tie_map(choice).items():
        for col in (2, 3):
            cat[col] = np.where(cat[col] == a, b, cat[col])
    model = np.concatenate([np.full(len(f.comp), i) for i, f in enumerate(feats)])
    return Stack(ModelFeatures(*cat), model.astype(int), len(feats))


def roofline_stack(s: Stack, theta: np.ndarray, p: float) -> np.ndarray:
    """Per-model roofline latency (µs) of a stack of models."""
    f = s.f
    scale = np.where(f.comp_group >= 0, theta[np.maximum(f.comp_group, 0)], 0.0)
    c = scale * f.comp * (1.0 + theta[PARAMS.index("parallel_half")] / f.out)
    m = theta[PARAMS.index("memory")] * f.mem + theta[PARAMS.index("spill")] * f.spill
    hi, lo = np.maximum(c, m), np.minimum(c, m)
    body = hi * (1.0 + (lo / np.maximum(hi, 1e-300)) ** p) ** (1.0 / p)  # (c^p + m^p)^(1/p), no overflow
    per_kernel = theta[f.ovh_group] + body
    return np.bincount(s.model, weights=per_kernel, minlength=s.n) + theta[PARAMS.index("fixed")]


def model_kernels(row: Row, spec: DeviceSpec) -> list[Kernel]:
    m = load_model(row.onnx)
    if row.batch != 1 or row.size is not None:
        m = set_batch(m, row.batch, row.size)
    ks, unknown = fuse(build_graph(m), FusionRules.from_json(spec.fusion), spec.element_bytes)
    if unknown:
        raise EdgedetError(f"{row.onnx.name}: op types with no kernel class: {unknown}")
    return ks


def roofline_log_jacobian(s: Stack, theta: np.ndarray, p: float, act: list[int], zp: float) -> np.ndarray:
    """∂ log T_model / ∂ z for z = (log θ_act…, logit of p): the analytic Jacobian of the
    fit's data residuals (one row per model), ~10× fewer model evaluations than finite
    differences."""
    f = s.f
    cg = np.maximum(f.comp_group, 0)
    ph = theta[PARAMS.index("parallel_half")]
    scale = np.where(f.comp_group >= 0, theta[cg], 0.0)
    c = scale * f.comp * (1.0 + ph / f.out)
    m_mem = theta[PARAMS.index("memory")] * f.mem
    m_sp = theta[PARAMS.index("spill")] * f.spill
    m = m_mem + m_sp
    hi, lo = np.maximum(c, m), np.minimum(c, m)
    r = lo / np.maximum(hi, 1e-300)
    rp = r**p
    body = hi * (1.0 + rp) ** (1.0 / p)
    safe = np.maximum(body, 1e-300)
    dc = np.where(body > 0, (c / safe) ** (p - 1.0), 0.0)
    dm = np.where(body > 0, (m / safe) ** (p - 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rlog = np.where(r > 0, rp * np.log(np.where(r > 0, r, 1.0)), 0.0)
    dbody_dp = body * (-np.log1p(rp) / p**2 + rlog / (p * (1.0 + rp)))
    total = roofline_stack(s, theta, p)
    cols = []
    for j in act:  # θ_j · ∂T/∂θ_j, per kernel, summed per model
        name = PARAMS[j]
        per = theta[j] * (f.ovh_group == j)
        per = per + dc * c * ((f.comp_group == j) & (f.comp_group >= 0))
        if name == "parallel_half":
            per = per + dc * scale * f.comp * ph / f.out
        elif name == "memory":
            per = per + dm * m_mem
        elif name == "spill":
            per = per + dm * m_sp
        col = np.bincount(s.model, weights=per, minlength=s.n)
        if name == "fixed":
            col = col + theta[j]
        cols.append(col)
    sig = float(expit(zp))
    cols.append(np.bincount(s.model, weights=dbody_dp, minlength=s.n) * 7.0 * sig * (1.0 - sig))
    return np.stack(cols, axis=1) / np.maximum(total, 1e-9)[:, None]


TIED = ("vector_overhead", "datamove")  # share `overhead` when FitChoice.tie_overheads


def fit(
    feats: list[ModelFeatures], y: np.ndarray, active: list[int], choice: FitChoice | None = None
) -> tuple[np.ndarray, float]:
    """θ ≥ 0 and the roofline exponent p ∈ [1, 8] minimising Σ log²(T(θ,p)/y) +
    w² Σ log²(θ/θ0) (a weak prior on the active parameters; w and tying per `choice`)."""
    from scipy.optimize import least_squares

    choice = choice or FitChoice(PRIOR_WEIGHT, False)
    ties = tie_map(choice)
    act = sorted({ties.get(j, j) for j in active})
    st = stack(feats, choice)
    centre = np.array([PRIOR[p] for p in PARAMS])
    zp0 = -3.0
    if choice.pooled_prior:  # shrink towards what one shared compute scale explains
        pooled = FitChoice(PRIOR_WEIGHT, True, True, pool_compute=True)
        th0, p0 = fit(feats, y, active, pooled)
        centre = np.where(th0 > 0, th0, centre)
        q = min(max((p0 - 1.0) / 7.0, 0.01), 0.99)  # p = 1 + 7·sigmoid(z)
        zp0 = float(np.log(q / (1.0 - q)))
    prior = np.log(centre[act])
    ly = np.log(y)
    w = choice.prior_weight

    def unpack(z: np.ndarray) -> tuple[np.ndarray, float]:
        theta = np.zeros(len(PARAMS))
        theta[act] = np.exp(z[:-1])
        return theta, 1.0 + 7.0 * float(expit(z[-1]))

    def resid(z: np.ndarray) -> np.ndarray:
        theta, p = unpack(z)
        pred = roofline_stack(st, theta, p)
        return np.concatenate([np.log(np.maximum(pred, 1e-9)) - ly, w * (z[:-1] - prior)])

    def jac(z: np.ndarray) -> np.ndarray:
        theta, p = unpack(z)
        return np.vstack([roofline_log_jacobian(st, theta, p, act, z[-1]), np.hstack([w * np.eye(len(act)),
                                                                                        np.zeros((len(act), 1))])])

    best = None
    for shift in (0.0, np.log(3.0)):
        z0 = np.append(prior + shift, zp0)
        with warnings.catch_warnings():  # trf's step search divides by a zero norm at exact optima
            warnings.simplefilter("ignore", RuntimeWarning)
            r = least_squares(resid, z0, jac=jac, method="trf", max_nfev=300, ftol=1e-6, xtol=1e-6,
                              x_scale="jac")
        if best is None or r.cost < best.cost:
            best = r
    theta, p = unpack(best.x)
    for a, b in ties.items():
        if a in active:
            theta[a] = theta[b]
    return theta, p


def calibrate(device: str, root: Path | None = None) -> dict:
    """Fit one device; return its profile document (with nested LOFO and LOO error)."""
    if device not in DEVICES:
        raise EdgedetError(f"no predicted-profile spec for {device!r}; known: {', '.join(DEVICES)}")
    spec = DEVICES[device]
    root = root or data_root()
    rows = reference_rows(spec, root)
    feats = [model_features(model_kernels(r, spec), spec) for r in rows]
    y = np.array([r.ref_ms * 1e3 for r in rows])  # µs
    used = {int(j) for f in feats for j in np.concatenate([f.comp_group, f.ovh_group]) if j >= 0}
    used.update({PARAMS.index("memory"), PARAMS.index("parallel_half")})
    if spec.hardware.get("onchip_bytes"):
        used.add(PARAMS.index("spill"))
    active = [j for j, p in enumerate(PARAMS) if j in used or (p == "fixed" and spec.fit_fixed)]
    fams = [family_of(r.model) for r in rows]

    def fit_predict(train: np.ndarray, test: np.ndarray, choice: FitChoice) -> np.ndarray:
        th_, p_ = fit([feats[i] for i in train], y[train], active, choice)
        return roofline_stack(stack([feats[i] for i in test]), th_, p_)

    every = np.arange(len(rows))
    chosen = choose(every, fams, y, fit_predict)
    theta, p_exp = fit(feats, y, active, chosen)
    fit_pred = roofline_stack(stack(feats), theta, p_exp)
    loo, _ = nested([str(i) for i in every], fams, y, fit_predict)
    n_fam = len(set(fams))
    lofo, lofo_choice = nested(fams, fams, y, fit_predict) if n_fam >= 2 else (None, None)
    th = dict(zip(PARAMS, theta.tolist(), strict=True))
    for p in PARAMS:  # groups the data never exercised keep their prior
        if p not in ("fixed", "spill") and th[p] == 0.0:
            th[p] = PRIOR[p]
    classes = {}
    for cls, (comp, ovh) in [*CLASS_GROUPS.items(), ("conv:k3s1", ("conv3x3", "overhead"))]:
        classes[cls] = {
            "overhead_us": th[ovh],
            "compute_scale": th[comp] if comp else 0.0,
            "memory_scale": th["memory"],
            "spill_scale": th["spill"],
            "parallel_half": th["parallel_half"] if comp else 0.0,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "id": spec.id,
        "kind": "predicted",
        "description": spec.description,
        "hardware": spec.hardware,
        "runtime": spec.runtime,
        "element_bytes": spec.element_bytes,
        "fusion": spec.fusion,
        "predictor": {
            "type": "roofline",
            "formula": "t_us = overhead_us + (C^p + M^p)^(1/p), C = compute_scale·FLOPs/(peak_gflops·1e3), "
            "M = memory_scale·bytes/(bandwidth_gbs·1e3), p = combine_p (1: sum, large: max); "
            "latency = Σ kernels + fixed_us",
            "fixed_us": th["fixed"] if spec.fit_fixed else 0.0,
            "combine_p": p_exp,
            "parameters": {p: th[p] for p in PARAMS if p != "fixed" or spec.fit_fixed},
            "efficiency": {
                p: 1.0 / th[p] for p in ("conv", "dwconv", "linear", "vector", "memory") if th[p] > 0
            },
            "classes": classes,
            "uncalibrated_classes": UNCALIBRATED_NOTE,
        },
        "calibration": calibration_doc(rows, y, fams, loo, lofo, lofo_choice, fit_pred, chosen, spec),
    }


def signed(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean signed relative error (negative: predictions too low on average)."""
    return float(np.mean((pred - y) / y))


def calibration_doc(rows, y, fams, loo, lofo, lofo_choice, fit_pred, chosen, spec) -> dict:
    """The `calibration` section: headline error is leave-one-family-out where the data
    has ≥ 2 families (leave-one-out beside it), with every row's held-out predictions."""
    has_lofo = lofo is not None
    head = lofo if has_lofo else loo
    choices = sorted({json.dumps(c.to_json(), sort_keys=True) for c in lofo_choice or []})
    return {
            "method": "least squares on log(pred/ref) (scipy least_squares) with a log-space prior; "
            f"prior weight and overhead tying chosen from {len(CHOICES)} options by inner "
            "leave-one-family-out validation on the training rows of each split (nested), never on "
            "the held-out rows; headline error = "
            + ("leave-one-family-out" if has_lofo else "leave-one-out (one family only: LOFO undefined)"),
            "source": spec.calibration_source,
            "error_basis": "leave-one-family-out" if has_lofo else "leave-one-out",
            "mape": mape(head, y),
            "within10": within10(head, y),
            "mean_signed_error": signed(head, y),
            "lofo_mape": mape(lofo, y) if has_lofo else None,
            "lofo_within10": within10(lofo, y) if has_lofo else None,
            "lofo_mean_signed_error": signed(lofo, y) if has_lofo else None,
            "lofo_note": None if has_lofo else f"all rows are one family ({fams[0]}): no family can be held out",
            "loo_mape": mape(loo, y),
            "loo_within10": within10(loo, y),
            "fit_mape": mape(fit_pred, y),
            "fit_within10": within10(fit_pred, y),
            "fit_choice": chosen.to_json(),
            "lofo_choices": [json.loads(c) for c in choices],
            "families": sorted(set(fams)),
            "n": len(rows),
            "set": [
                {
                    "model": r.model,
                    "family": f,
                    "batch": r.batch,
                    "input_size": r.size or 224,
                    "reference_ms": r.ref_ms,
                    "lofo_predicted_ms": round(float(q) / 1e3, 4) if has_lofo else None,
                    "loo_predicted_ms": round(float(p) / 1e3, 4),
                    "fit_predicted_ms": round(float(z) / 1e3, 4),
                    "note": r.note,
                }
                for i, (r, f, p, z) in enumerate(zip(rows, fams, loo, fit_pred, strict=True))
                for q in [lofo[i] if has_lofo else 0.0]
            ],
            "regenerate": f"python -m edgedet.profiles.calibrate {spec.id}",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("devices", nargs="*", default=list(DEVICES))
    ap.add_argument(
        "--data", type=Path, default=None, help="folder with latency-reference/ and a100-reference/"
    )
    ap.add_argument("--out", type=Path, default=PROFILE_DIR)
    a = ap.parse_args(argv)
    for d in a.devices:
        doc = calibrate(d, a.data)
        write_json_atomic(a.out / f"{d}.json", doc)
        c = doc["calibration"]
        lofo = "  n/a" if c["lofo_mape"] is None else f"{100 * c['lofo_mape']:5.1f}%"
        print(
            f"{d:12s} n={c['n']:2d}  LOFO MAPE {lofo}  LOO MAPE {100 * c['loo_mape']:5.1f}%  "
            f"within±10% {100 * c['within10']:5.1f}% ({c['error_basis']})  "
            f"(fit MAPE {100 * c['fit_mape']:.1f}%)  → {a.out / (d + '.json')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
