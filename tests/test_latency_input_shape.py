"""`predict --onnx` prices the file's static input shape; a conflicting --input-size is
refused naming both; a dynamic graph takes --input-size (and refuses to guess)."""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

from edgedet.errors import EdgedetError
from edgedet.profiles import predict_onnx


def _conv_model(h: int | str, w: int | str) -> bytes:
    """Conv(3→8, 3×3) + GlobalAveragePool on a 1×3×h×w input (str dims are symbolic)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])
    wt = helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 3, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [x, wt], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _conv_flops(pred) -> float:
    return sum(k.flops for k in pred.kernels if k.op == "conv")


def test_static_shape_is_priced_as_in_the_file():
    p299 = predict_onnx(_conv_model(299, 299), "cortex-a76")
    p224 = predict_onnx(_conv_model(224, 224), "cortex-a76")
    assert p299.input_shape == (1, 3, 299, 299)
    assert _conv_flops(p299) == pytest.approx(_conv_flops(p224) * (299 / 224) ** 2, rel=1e-6)
    assert p299.latency_ms > p224.latency_ms
    # the matching size is accepted, and changes nothing
    same = predict_onnx(_conv_model(299, 299), "cortex-a76", input_size=299)
    assert same.latency_ms == pytest.approx(p299.latency_ms)


def test_conflicting_input_size_on_static_graph_names_both():
    with pytest.raises(EdgedetError, match=r"--input-size 224.*299x299"):
        predict_onnx(_conv_model(299, 299), "cortex-a76", input_size=224)
    with pytest.raises(EdgedetError, match="320x240"):
        predict_onnx(_conv_model(320, 240), "cortex-a76", input_size=320)


def test_dynamic_graph_takes_input_size_and_never_guesses():
    dyn = _conv_model("H", "W")
    p = predict_onnx(dyn, "cortex-a76", input_size=160)
    assert p.input_shape == (1, 3, 160, 160)
    ref = predict_onnx(_conv_model(160, 160), "cortex-a76")
    assert p.latency_ms == pytest.approx(ref.latency_ms, rel=1e-9)
    with pytest.raises(EdgedetError, match="dynamic spatial shape.*--input-size"):
        predict_onnx(dyn, "cortex-a76")


def test_cli_static_299_prices_299_and_refuses_224(tmp_path, capsys):
    from edgedet.cli.main import main

    path = tmp_path / "m299.onnx"
    path.write_bytes(_conv_model(299, 299))
    out = tmp_path / "p.json"
    assert main(["predict", "--onnx", str(path), "--device", "cortex-a76", "--json", str(out)]) == 0
    assert "299×299" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["input_size"] == 299 and doc["input_shape"] == [1, 3, 299, 299]
    assert main(["predict", "--onnx", str(path), "--device", "cortex-a76", "--input-size", "224"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "224" in err[0] and "299x299" in err[0]


def test_cli_dynamic_graph_needs_input_size(tmp_path, capsys):
    from edgedet.cli.main import main

    path = tmp_path / "dyn.onnx"
    path.write_bytes(_conv_model("H", "W"))
    assert main(["predict", "--onnx", str(path), "--device", "cortex-a76"]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert main(["predict", "--onnx", str(path), "--device", "cortex-a76", "--input-size", "256"]) == 0
    assert "256×256" in capsys.readouterr().out


def test_asymmetric_kernels_take_no_square_variant():
    """A 1×7 / 7×1 / 3×1 conv is priced by the generic conv entry, not a k×k variant."""
    from edgedet.profiles.cost import variant_key
    from edgedet.profiles.kernel import Kernel
    from edgedet.profiles.measure import class_key

    classes = {"conv": {}, "conv:k3s1": {}, "conv:k3": {}, "conv:k1": {}}

    def conv(kh, kw, sh=1, sw=1):
        return Kernel("conv", "c", ["c"], [(1, 8, 16, 16)], [(1, 8, 16, 16)], 1.0, 1.0, 1.0,
                      kernel_size=(kh, kw), stride=(sh, sw))

    assert variant_key(conv(3, 3), classes) == "conv:k3s1"
    assert variant_key(conv(3, 1), classes) == "conv"
    assert variant_key(conv(1, 7), classes) == "conv"
    assert variant_key(conv(3, 3, 1, 2), classes) == "conv"
    assert class_key(conv(1, 1)) == "conv:k1" and class_key(conv(1, 7)) == "conv"
