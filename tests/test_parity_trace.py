"""The parity gate explains itself: allclose-style bounds per output, and a layer-by-layer
trace that names the first node where an exported graph departs from the exporter's graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edgedet import models
from edgedet.exporters import onnx as onnx_export
from edgedet.exporters import parity, parity_trace
from edgedet.exporters.pipeline import ExportRequest, ParityFailed, export_artifact, report_path
from edgedet.exporters.prepare import prepare

torch.set_num_threads(1)
FP32 = parity.DEFAULT_TOLERANCE["fp32"]


def test_compare_output_uses_atol_plus_rtol_and_says_where():
    ref = np.array([[1000.0, 0.0], [1.0, -2.0]], dtype=np.float32)
    got = ref + np.array([[0.5, 5e-5], [0.0, 0.0]], dtype=np.float32)
    e = parity.compare_output("y", ref, got, parity.Tolerance(1e-4, 1e-3))
    assert e.passed and e.max_abs_err == pytest.approx(0.5) and e.shape == [2, 2]
    assert e.max_rel_err == pytest.approx(5e-4) and e.where == [0, 1]  # 5e-5 / 1e-4 beats 0.5 / 1.0001
    bad = parity.compare_output("y", ref, got, parity.Tolerance(1e-4, 0.0))
    assert not bad.passed and bad.where == [0, 0] and bad.excess == pytest.approx(5000)
    assert "max rel" in bad.line() and "at [0, 0] (ref 1000, got 1000.5)" in bad.line()
    labels = parity.compare_output("labels", np.array([1, 2, 3]), np.array([1, 2, 4]), FP32)
    assert labels.mismatches == 1 and not labels.passed
    shape = parity.compare_output("y", ref, ref[:1], FP32)
    assert not shape.passed and shape.to_json()["max_abs_err"] == "inf"


@pytest.fixture(scope="module")
def exported():
    torch.manual_seed(0)
    net = models.create("quadranet25-xxs").eval()
    form = prepare(net, 64)
    ex = onnx_export.export_onnx(form.module, form.example(), ["image"], ["logits"])
    feeds = {"image": form.example(1, seed=3)[0].numpy()}
    return ex, feeds


def _wrong_fold(model, nth: int = 1) -> str:
    """A deliberately wrong rewrite, as a bad folding pass would make: the nth Conv's weight
    has every other output channel negated (LayerNorms would hide a uniform scale). Returns
    that Conv's node name."""
    from onnx import helper, numpy_helper

    conv = [n for n in model.graph.node if n.op_type == "Conv"][nth]
    w = conv.input[1]
    shape = {i.name: list(i.dims) for i in model.graph.initializer}.get(w)
    c_out = shape[0] if shape else 32
    signs = np.where(np.arange(c_out) % 2 == 0, 1.0, -1.0).astype(np.float32).reshape(c_out, 1, 1, 1)
    model.graph.initializer.append(numpy_helper.from_array(signs, "wrong_signs"))
    model.graph.node.insert(
        list(model.graph.node).index(conv), helper.make_node("Mul", [w, "wrong_signs"], [f"{w}_wrong"])
    )
    conv.input[1] = f"{w}_wrong"
    return conv.name


def test_float64_reference_matches_pytorch_float64(exported):
    ex, feeds = exported
    ref, engine = parity_trace.reference_tensors(ex.source, feeds)
    assert "float64" in engine and ref["logits"].dtype == np.float64
    torch.manual_seed(0)
    net = models.create("quadranet25-xxs").eval().double()
    with torch.no_grad():
        want = net(torch.from_numpy(feeds["image"]).double()).numpy()
    assert np.abs(ref["logits"] - want).max() <= 1e-9 * np.abs(want).max()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_trace_names_the_first_diverging_node(exported, runtime):
    ex, feeds = exported
    clean = parity_trace.trace(ex.source, ex.model, feeds, runtime, "fp32", FP32)
    assert clean.first_divergent is None and len(clean.nodes) > 500
    assert clean.unmatched == 0 or runtime == "openvino"  # OpenVINO folds marked constants away
    broken = onnx.ModelProto()
    broken.CopyFrom(ex.model)
    name = _wrong_fold(broken)
    res = parity_trace.trace(ex.source, broken, feeds, runtime, "fp32", FP32)
    first = res.first_divergent
    assert first is not None and first.node == name and first.op == "Conv"
    assert all(n.excess <= 1 for n in res.nodes if n.index < first.index and not n.integer)
    lines = res.lines()
    assert f"first diverging node: #{first.index} Conv '{name}'" in lines[0]
    assert any("← first over the bound" in ln for ln in lines)


def test_failed_export_writes_only_the_report_naming_the_node(tmp_path, monkeypatch):
    """A wrong rewrite inside the exporter: parity fails, the trace finds the node, nothing else is left."""
    broken: list[str] = []
    real = onnx_export.narrow_gather_elements

    def wrong_rewrite(model):
        broken.append(_wrong_fold(model))
        return real(model)

    monkeypatch.setattr(onnx_export, "narrow_gather_elements", wrong_rewrite)
    out = tmp_path / "art"
    with pytest.raises(ParityFailed) as err:
        export_artifact(ExportRequest(model="quadranet25-xxs", format="onnx", out=out, input_size=64))
    assert err.value.trace.first_divergent.node == broken[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.parity-report.json"]
    report = json.loads(report_path(out).read_text())
    assert report["written"] is False and report["parity"]["passed"] is False
    assert report["trace"]["first_divergent"]["node"] == broken[0]
    assert report["failing_outputs"][0]["name"] == "logits" and report["failing_outputs"][0]["where"] is not None


def test_large_activations_pass_within_rtol(tmp_path):
    """Logits ~1e4: fp32 rounding exceeds any fixed atol, yet stays within rtol of the outputs."""
    torch.manual_seed(1)
    net = models.create("quadranet25-xxs")
    with torch.no_grad():
        net.head.weight.mul_(1e4)
        net.head.bias.mul_(1e4)
    ckpt = tmp_path / "big.pt"
    torch.save(net.state_dict(), ckpt)
    req = dict(model="quadranet25-xxs", format="onnx", input_size=64, checkpoint=ckpt)
    res = export_artifact(ExportRequest(out=tmp_path / "ok", **req))
    assert res.parity.passed and res.parity.max_abs_err > FP32.atol
    assert res.parity.cases[0].outputs[0].max_abs_ref > 1e3
    with pytest.raises(ParityFailed):
        export_artifact(ExportRequest(out=tmp_path / "abs-only", rtol=0.0, **req))


def test_float64_copy_keeps_function_attributes_and_float_constants():
    """A local function scaling by a float attribute, plus value_float constants: float64 evaluation
    gives the fp32 values (a dropped attribute would give 0, a float32 leftover a type error)."""
    from onnx import AttributeProto, TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    scale = helper.make_node("Constant", [], ["s"])
    ref = AttributeProto()
    ref.name, ref.ref_attr_name, ref.type = "value_float", "scale", AttributeProto.FLOAT
    scale.attribute.append(ref)
    body = [scale, helper.make_node("Mul", ["x", "s"], ["y"])]
    fn = helper.make_function("test", "Scale", ["x"], ["y"], body, [helper.make_opsetid("", 17)], ["scale"])
    nodes = [
        helper.make_node("Scale", ["x"], ["a"], domain="test", scale=0.25),
        helper.make_node("Constant", [], ["c"], value_float=3.0),
        helper.make_node("Add", ["a", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test", 1)]
    )
    x = np.array([1.0, -2.0], dtype=np.float32)
    (y64,) = ReferenceEvaluator(parity_trace.float64_copy(model)).run(None, {"x": x.astype(np.float64)})
    assert y64.dtype == np.float64 and y64.tolist() == [3.25, 2.5]
