"""In-context calibration (pure fit), the runtime's layout conversions, and the profile
schema's checks of context scales."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from edgedet.errors import EdgedetError
from edgedet.profiles.calibration_nets import plain_cnn
from edgedet.profiles.context import ContextRow, fit_context, loo_errors, predict_row


def _rows(scales: dict[str, float], overhead: float, fixed: float, n: int = 30) -> list[ContextRow]:
    r = random.Random(0)
    rows = []
    for i in range(n):
        per = {c: r.uniform(50, 5000) for c in scales if r.random() < 0.8}
        k = r.randint(20, 300)
        m = fixed + sum(scales[c] * v for c, v in per.items()) + overhead * k
        rows.append(ContextRow(f"n{i}", "test", per, k, m))
    return rows


def test_fit_context_recovers_scales_and_overhead():
    truth = {"conv": 0.8, "linear": 1.3, "layernorm": 1.1}
    rows = _rows(truth, overhead=2.0, fixed=5.0)
    scales, overhead = fit_context(rows, fixed_us=5.0, ridge=1e-9)
    for c, v in truth.items():
        assert scales[c] == pytest.approx(v, rel=1e-3)
    assert overhead == pytest.approx(2.0, rel=1e-2)
    assert max(abs(e) for e in loo_errors(rows, 5.0)) < 0.02
    assert predict_row(rows[0], scales, overhead, 5.0) == pytest.approx(rows[0].measured_us, rel=1e-3)


def test_fit_context_pulls_unseen_evidence_towards_one_and_stays_bounded():
    rows = _rows({"conv": 10.0}, overhead=1.0, fixed=1.0)  # an absurd truth: bounded at 2.5
    scales, _ = fit_context(rows, 1.0)
    assert scales["conv"] == pytest.approx(2.5)
    assert fit_context([], 0.0) == ({}, 0.0)


def test_plain_cnns_are_deterministic_and_run():
    import torch

    for seed in range(8):
        a, kind_a = plain_cnn(random.Random(seed))
        b, kind_b = plain_cnn(random.Random(seed))
        assert kind_a == kind_b and repr(a) == repr(b)
        assert a.eval()(torch.zeros(1, 3, 96, 96)).shape == (1, 1000)


def _conv_chain():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [16, 16, 3, 3]) for n in ("w1", "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["y"])]
    g = helper.make_graph(nodes, "chain", [x, *w], [y])  # structure-only: weights are inputs
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_onnxruntime_reorders_sit_at_layout_boundaries_only():
    from edgedet.profiles.graph import build_graph
    from edgedet.profiles.layout import fill_weights, onnxruntime_reorders

    m = _conv_chain()
    ks = onnxruntime_reorders(m, build_graph(m, ["x"]).shapes)
    # the two convs share NCHWc; the only conversions are into the chain and out before Flatten
    assert 1 <= len(ks) <= 2 and all(k.op == "reorder" and k.input_shapes == [(1, 16, 8, 8)] for k in ks)
    assert any(k.nodes == ["ReorderOutput"] for k in ks)
    filled = fill_weights(m)
    assert [i.name for i in filled.graph.input] == ["x"] and len(filled.graph.initializer) == 2


def test_schema_rejects_bad_context_scales():
    from edgedet.profiles import from_document, load_profile

    base = json.loads(json.dumps(load_profile("cortex-a76").doc))
    doc = copy.deepcopy(base)
    doc["predictor"]["context_scale"] = {"no-such-class": 1.0}
    with pytest.raises(EdgedetError, match="context_scale.no-such-class"):
        from_document(doc)
    cls = next(iter(base["predictor"]["classes"]))
    doc["predictor"]["context_scale"] = {cls: -1.0}
    with pytest.raises(EdgedetError, match=f"context_scale.{cls}"):
        from_document(doc)
    doc["predictor"]["context_scale"] = {cls: float(np.float64(1.2))}
    from_document(doc)
