"""Calibrate the predicted (roofline) profiles on public whole-model latencies, with
leave-one-out error, and write profiles/<id>.json.

Each model's predicted latency is linear in the parameters θ (inverse efficiencies per op
group, memory scale, per-kernel overheads, per-inference constant):
    T_model = Σ_j θ_j · F_j(model)
so θ is fitted by least squares on log(T_pred / T_ref) (scipy), with a weak log-space
prior that keeps classes the data barely exercises near plausible values. Leave-one-out
refits everything without the held-out row.

    python -m edgedet.nas.latency.calibrate [DEVICE ...] [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedet.arch import write_json_atomic
from edgedet.errors import EdgedetError
from edgedet.nas.latency.devices import DEVICES, DeviceSpec
from edgedet.nas.latency.fusion import FusionRules, fuse
from edgedet.nas.latency.graph import build_graph, load_model, set_batch
from edgedet.nas.latency.kernel import Kernel
from edgedet.profiles import PROFILE_DIR, SCHEMA_VERSION

# op class → (compute group, overhead group); memory_scale is shared by all classes
CLASS_GROUPS = {
    "conv": ("conv", "overhead"),
    "dwconv": ("dwconv", "overhead"),
    "quadconv": ("dwconv", "overhead"),
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
    "overhead",
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
    "overhead": 10.0,
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


def model_features(kernels: list[Kernel], spec: DeviceSpec) -> ModelFeatures:
    hw = spec.hardware
    comp, mem, cg, og, out = [], [], [], [], []
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
        cg.append(PARAMS.index(c) if c else -1)
        og.append(PARAMS.index(o))
        out.append(max(1.0, float(sum(math.prod(s) for s in k.output_shapes))))
    return ModelFeatures(np.array(comp), np.array(mem), np.array(cg), np.array(og), np.array(out))


def roofline_us(f: ModelFeatures, theta: np.ndarray, p: float) -> float:
    """Σ_k overhead + (compute^p + memory^p)^(1/p) + fixed  (p=1: sum, p→∞: max); compute
    efficiency falls as out/(out + parallel_half) when a kernel has few outputs to spread."""
    scale = np.where(f.comp_group >= 0, theta[np.maximum(f.comp_group, 0)], 0.0)
    c = scale * f.comp * (1.0 + theta[PARAMS.index("parallel_half")] / f.out)
    m = theta[PARAMS.index("memory")] * f.mem
    hi, lo = np.maximum(c, m), np.minimum(c, m)
    body = hi * (1.0 + (lo / np.maximum(hi, 1e-300)) ** p) ** (1.0 / p)  # (c^p + m^p)^(1/p), no overflow
    return float(theta[f.ovh_group].sum() + body.sum() + theta[PARAMS.index("fixed")])


def model_kernels(row: Row, spec: DeviceSpec) -> list[Kernel]:
    m = load_model(row.onnx)
    if row.batch != 1 or row.size is not None:
        m = set_batch(m, row.batch, row.size)
    ks, unknown = fuse(build_graph(m), FusionRules.from_json(spec.fusion), spec.element_bytes)
    if unknown:
        raise EdgedetError(f"{row.onnx.name}: op types with no kernel class: {unknown}")
    return ks


def fit(feats: list[ModelFeatures], y: np.ndarray, active: list[int]) -> tuple[np.ndarray, float]:
    """θ ≥ 0 and the roofline exponent p ∈ [1, 8] minimising Σ log²(T(θ,p)/y) +
    w² Σ log²(θ/θ0) (a weak prior on the active parameters)."""
    from scipy.optimize import least_squares

    prior = np.log(np.array([PRIOR[PARAMS[j]] for j in active]))
    ly = np.log(y)

    def unpack(z: np.ndarray) -> tuple[np.ndarray, float]:
        theta = np.zeros(len(PARAMS))
        theta[active] = np.exp(z[:-1])
        return theta, 1.0 + 7.0 / (1.0 + np.exp(-z[-1]))

    def resid(z: np.ndarray) -> np.ndarray:
        theta, p = unpack(z)
        pred = np.array([roofline_us(f, theta, p) for f in feats])
        return np.concatenate([np.log(np.maximum(pred, 1e-9)) - ly, PRIOR_WEIGHT * (z[:-1] - prior)])

    best = None
    for shift in (0.0, np.log(3.0)):
        for zp in (-3.0,):
            r = least_squares(resid, np.append(prior + shift, zp), method="trf", max_nfev=3000)
            if best is None or r.cost < best.cost:
                best = r
    return unpack(best.x)


def errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    rel = np.abs(pred - y) / y
    return float(rel.mean()), float((rel <= 0.10).mean())


def calibrate(device: str, root: Path | None = None) -> dict:
    """Fit one device; return its profile document (with LOO error)."""
    if device not in DEVICES:
        raise EdgedetError(f"no predicted-profile spec for {device!r}; known: {', '.join(DEVICES)}")
    spec = DEVICES[device]
    root = root or data_root()
    rows = reference_rows(spec, root)
    feats = [model_features(model_kernels(r, spec), spec) for r in rows]
    y = np.array([r.ref_ms * 1e3 for r in rows])  # µs
    used = {int(j) for f in feats for j in np.concatenate([f.comp_group, f.ovh_group]) if j >= 0}
    used.update({PARAMS.index("memory"), PARAMS.index("parallel_half")})
    active = [j for j, p in enumerate(PARAMS) if j in used or (p == "fixed" and spec.fit_fixed)]
    theta, p_exp = fit(feats, y, active)
    fit_pred = np.array([roofline_us(f, theta, p_exp) for f in feats])
    loo = np.zeros(len(rows))
    for i in range(len(rows)):
        keep = [j for j in range(len(rows)) if j != i]
        th_i, p_i = fit([feats[j] for j in keep], y[keep], active)
        loo[i] = roofline_us(feats[i], th_i, p_i)
    mape, w10 = errors(loo, y)
    fmape, fw10 = errors(fit_pred, y)
    th = dict(zip(PARAMS, theta.tolist(), strict=True))
    for p in PARAMS:  # groups the data never exercised keep their prior
        if p != "fixed" and th[p] == 0.0:
            th[p] = PRIOR[p]
    classes = {}
    for cls, (comp, ovh) in [*CLASS_GROUPS.items(), ("conv:k3s1", ("conv3x3", "overhead"))]:
        classes[cls] = {
            "overhead_us": th[ovh],
            "compute_scale": th[comp] if comp else 0.0,
            "memory_scale": th["memory"],
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
        "calibration": {
            "method": "least squares on log(pred/ref) (scipy least_squares) with a weak log-space prior "
            f"(weight {PRIOR_WEIGHT}); leave-one-out refits every parameter without the held-out row",
            "source": spec.calibration_source,
            "set": [
                {
                    "model": r.model,
                    "batch": r.batch,
                    "input_size": r.size or 224,
                    "reference_ms": r.ref_ms,
                    "loo_predicted_ms": round(float(p) / 1e3, 4),
                    "fit_predicted_ms": round(float(q) / 1e3, 4),
                    "note": r.note,
                }
                for r, p, q in zip(rows, loo, fit_pred, strict=True)
            ],
            "mape": mape,
            "within10": w10,
            "fit_mape": fmape,
            "fit_within10": fw10,
            "n": len(rows),
            "regenerate": f"python -m edgedet.nas.latency.calibrate {spec.id}",
        },
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
        print(
            f"{d:12s} n={c['n']:2d}  LOO MAPE {100 * c['mape']:5.1f}%  "
            f"within±10% {100 * c['within10']:5.1f}%  "
            f"(fit MAPE {100 * c['fit_mape']:.1f}%)  → {a.out / (d + '.json')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
