"""Few-shot adaptation: the correction algebra (pure), diversity order, and a real
end-to-end adaptation of cortex-a76 to this machine's ONNX Runtime (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from edgedet.profiles import from_document, load_profile
from edgedet.profiles.adapt import Correction, adapted_document, diverse_order, fit_correction
from edgedet.profiles.context import ContextRow


def _rows(g: float, overhead: float, fixed: float, n: int = 12) -> list[ContextRow]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        per = {"conv": float(rng.uniform(1e3, 1e5)), "dwconv": float(rng.uniform(0, 2e4)),
               "elementwise": float(rng.uniform(10, 2e3))}
        k = int(rng.integers(10, 200))
        rows.append(ContextRow(f"n{i}", "f", per, k, fixed + g * sum(per.values()) + overhead * k))
    return rows


def test_correction_recovers_a_scaled_device():
    rows = _rows(g=0.07, overhead=4.0, fixed=30.0)
    c = fit_correction(rows, 30.0)
    pred = np.array([c.predict(r) for r in rows])
    meas = np.array([r.measured_us for r in rows])
    assert np.max(np.abs(pred - meas) / meas) < 0.03
    assert 0.03 < c.global_scale < 0.15


def test_diverse_order_starts_central_and_spreads():
    rows = [ContextRow(f"n{i}", "f", {"conv": 10.0 ** (1 + i / 4)}, 5, 0.0) for i in range(13)]
    order = diverse_order(rows, 3)
    assert order[0] == 6 and set(order[1:]) == {0, 12}


def test_adapted_document_folds_the_correction_into_the_roofline():
    """Pricing with the adapted profile equals fixed + Σ g·s_c·(base kernel µs) + o·n."""
    from edgedet.profiles import predict_onnx
    from edgedet.profiles.adapt import base_row
    from edgedet.profiles.calibrate import data_root

    base = load_profile("cortex-a76")
    mb = (data_root() / "latency-reference" / "onnx" / "squeezenet.onnx").read_bytes()
    row = base_row("squeezenet", "cnn", mb, base)
    corr = Correction(0.05, {"conv": 1.3, "pool": 0.7}, 3.0, 40.0)
    rows = [ContextRow("a", "f", row.per_class_us, row.n_kernels, 1e4)] * 3
    doc = adapted_document(base, corr, rows, {"name": "onnxruntime", "threads": 1}, {"cpu": "x"}, "ad")
    prof = from_document(doc, "<adapted>")
    assert doc["adapted_from"]["id"] == "cortex-a76" and prof.calibration["error_basis"] == "leave-one-out"
    got = predict_onnx(mb, prof).latency_ms * 1e3
    assert got == pytest.approx(corr.predict(row), rel=1e-6)


@pytest.mark.slow
def test_adapt_cli_end_to_end(tmp_path):
    import json

    from edgedet.cli.main import main

    out = tmp_path / "ad.json"
    assert main(["profile", "--adapt", "cortex-a76", "--measure", "3", "--runtime", "onnxruntime",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["adapted_from"]["id"] == "cortex-a76" and doc["calibration"]["n"] == 3
    assert all(r["measured_ms"] > 0 for r in doc["calibration"]["set"])
