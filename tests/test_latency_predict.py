"""Prediction API and `edgedet predict`: additivity, unknown ops, consistency with the
calibration, CLI output and errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.profiles import load_profile, predict_module, predict_onnx

torch.set_num_threads(1)


def test_block_prediction_and_additivity():
    from edgedet.models.quadranet import QuadraBlock

    p = load_profile("cortex-a76")
    b1, b2 = QuadraBlock(32, 7, 4), QuadraBlock(32, 3, 2)
    r1 = predict_module(b1, (1, 32, 28, 28), p)
    r2 = predict_module(b2, (1, 32, 28, 28), p)
    both = predict_module(nn.Sequential(b1, b2), (1, 32, 28, 28), p)
    assert r1.profile_id == "cortex-a76" and r1.latency_ms > r2.latency_ms > 0
    assert both.latency_ms == pytest.approx(r1.latency_ms + r2.latency_ms - r1.fixed_ms, rel=1e-6)
    assert {"quadconv", "layernorm", "gelu", "linear"} <= {k.op for k in r1.kernels}
    assert sum(k.latency_ms for k in r1.kernels) == pytest.approx(r1.kernel_ms)


def test_meta_and_onnx_routes_agree():
    from edgedet.models.quadranet import QuadraBlock

    b = QuadraBlock(48, 5, 4)
    for pid in ("cortex-a76", "a100-trt"):
        a = predict_module(b, (1, 48, 14, 14), pid, via="meta")
        o = predict_module(b, (1, 48, 14, 14), pid, via="onnx")
        assert a.latency_ms == pytest.approx(o.latency_ms, rel=0.05)


def test_predicted_roofline_reproduces_its_calibration():
    """The cost code and the calibration code compute the same model."""
    from edgedet.profiles.calibrate import data_root

    for pid in ("cortex-a76", "myriad-vpu"):
        p = load_profile(pid)
        row = next(r for r in p.calibration["set"] if r["model"] == "resnet18")
        got = predict_onnx(data_root() / "latency-reference" / "onnx" / "resnet18.onnx", p).latency_ms
        assert got == pytest.approx(row["fit_predicted_ms"], rel=1e-3)


def _einsum_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    n = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Einsum", ["r"], ["y"], equation="bij->bji"),
    ]
    m = helper.make_model(helper.make_graph(n, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    return m.SerializeToString()


def test_unknown_op_errors_or_warns_loudly(caplog):
    with pytest.raises(EdgedetError, match="Einsum"):
        predict_onnx(_einsum_model(), "cortex-a76")
    with caplog.at_level(logging.WARNING, logger="edgedet.latency"):
        r = predict_onnx(_einsum_model(), "cortex-a76", allow_unknown=True)
    assert r.unknown_ops == ["Einsum"] and "Einsum" in caplog.text
    assert r.latency_ms > 0  # the Relu is still priced


def test_unknown_aten_op_from_module_is_reported():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.erfinv(x)

    with pytest.raises(EdgedetError, match="erfinv"):
        predict_module(Odd(), (1, 4, 8), "cortex-a76")


def test_cli_predict_json(tmp_path):
    from edgedet.cli.main import main

    out = tmp_path / "p.json"
    assert main(["predict", "quadranet25-xxs", "--device", "adreno640", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["latency_ms"] > 0 and doc["predicted"] is True
    assert doc["profile"]["id"] == "adreno640" and "mape" in doc["profile"]["calibration"]
    lat = [k["latency_ms"] for k in doc["kernels"]]
    assert lat == sorted(lat, reverse=True)
    assert doc["latency_ms"] == pytest.approx(sum(lat) + doc["fixed_ms"], rel=1e-6)
    assert {"op", "input_shapes", "output_shapes", "flops", "bytes_read"} <= set(doc["kernels"][0])


def test_cli_predict_structure_only_onnx(capsys):
    from edgedet.cli.main import main
    from edgedet.profiles.calibrate import data_root

    path = data_root() / "latency-reference" / "onnx" / "mobilenet_v2.onnx"
    assert main(["predict", "--onnx", str(path), "--device", "cortex-a76"]) == 0
    assert "predicted with predicted profile 'cortex-a76'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, msg",
    [
        (["predict", "quadranet25-xxs", "--device", "no-such"], "unknown device profile"),
        (["predict", "no-such-model", "--device", "cortex-a76"], "unknown model"),
        (["predict", "--device", "cortex-a76"], "exactly one of"),
        (["predict", "convnet", "--device", "nn-meter:cortexA76cpu_tflite21"], "nn-Meter"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, msg):
    from edgedet.cli.main import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_batch_override_scales_work():
    from edgedet.profiles.calibrate import data_root

    path = data_root() / "a100-reference" / "onnx" / "resnet50.onnx"
    one = predict_onnx(path, "a100-trt")
    many = predict_onnx(path, "a100-trt", batch=64)
    assert many.latency_ms > 4 * one.latency_ms
    assert np.isclose(sum(k.flops for k in many.kernels), 64 * sum(k.flops for k in one.kernels), rtol=1e-6)
