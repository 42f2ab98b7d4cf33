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
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.profiles.crossval import CHOICES, FitChoice, choose, family_of, mape, nested, within10
from edgedet.profiles.devices import DEVICES, DeviceSpec
from edgedet.profiles.fusion import FusionRules, fuse
from edgedet.profiles.graph import build_graph, load_model, set_batch
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import PROFILE_DIR
from edgedet.profiles.roofline_fit import (
    CLASS_GROUPS,
    PARAMS,
    PRIOR,
    UNCALIBRATED_NOTE,
    fit,
    model_features,
    roofline_stack,
    stack,
)
from edgedet.profiles.schema import SCHEMA_VERSION


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


def model_kernels(row: Row, spec: DeviceSpec) -> list[Kernel]:
    m = load_model(row.onnx)
    if row.batch != 1 or row.size is not None:
        m = set_batch(m, row.batch, row.size)
    ks, unknown = fuse(build_graph(m), FusionRules.from_json(spec.fusion), spec.element_bytes)
    if unknown:
        raise EdgedetError(f"{row.onnx.name}: op types with no kernel class: {unknown}")
    return ks


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
