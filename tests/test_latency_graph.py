"""Kernel graphs: structure-only ONNX, fusion patterns, unknown ops, module recording."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.profiles.fusion import FusionRules, fuse
from edgedet.profiles.graph import build_graph
from edgedet.profiles.module_graph import record

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference_onnx():
    from edgedet.profiles.calibrate import data_root

    return data_root() / "latency-reference" / "onnx"


def _export(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.randn(*shape),), buf, dynamo=False, opset_version=17, export_params=False
        )
    return buf.getvalue()


def _kernels(model, rules: FusionRules | None = None):
    ks, unknown = fuse(build_graph(model), rules or FusionRules())
    return [k for k in ks if k.op != "identity"], unknown


def _onnx(nodes, inputs, inits=(), opset=17) -> bytes:
    outs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "g", inputs, outs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def test_structure_only_reference_graph(reference_onnx):
    ks, unknown = _kernels(reference_onnx / "resnet18.onnx")
    assert unknown == []
    convs = [k for k in ks if k.op == "conv"]
    assert len(convs) == 20  # 17 3×3/7×7 + 3 downsampling 1×1
    # torchvision quotes 1.81 GMACs for resnet18 at 224²
    assert sum(k.flops for k in ks) == pytest.approx(2 * 1.82e9, rel=0.02)
    stem = convs[0]
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2) and stem.groups == 1
    assert stem.nodes[:3] == ["Conv", "BatchNormalization", "Relu"]  # conv+bn+act is one kernel
    assert stem.output_shapes == [(1, 64, 112, 112)]
    assert stem.bytes_written == 4 * 64 * 112 * 112


def test_depthwise_and_groups(reference_onnx):
    ks, _ = _kernels(reference_onnx / "mobilenet_v2.onnx")
    dw = [k for k in ks if k.op == "dwconv"]
    assert len(dw) == 17 and all(k.groups == k.input_shapes[0][1] for k in dw)


def test_quadratic_conv_is_one_kernel():
    from edgedet.kernels import QuadraConv2d

    ks, unknown = _kernels(_export(QuadraConv2d(16, 7), (1, 16, 14, 14)))
    assert unknown == [] and [k.op for k in ks] == ["quadconv"]
    k = ks[0]
    assert k.kernel_size == (7, 7) and k.groups == 16
    # three depthwise 7×7 convs (as one grouped conv, 3C outputs) + multiply + add + bias
    assert k.flops == pytest.approx(2 * 3 * 16 * 14 * 14 * 49 + 3 * 16 * 14 * 14, rel=0.01)
    assert k.output_shapes == [(1, 16, 14, 14)]


def test_decomposed_layernorm_and_gelu_fuse():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 32])
    c = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.float32), n)  # noqa: E731
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[-1]),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
        helper.make_node("Div", ["d", "s"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["ng"]),
        helper.make_node("Add", ["ng", "beta"], ["ln"]),
        helper.make_node("Div", ["ln", "sqrt2"], ["g1"]),
        helper.make_node("Erf", ["g1"], ["g2"]),
        helper.make_node("Add", ["g2", "one"], ["g3"]),
        helper.make_node("Mul", ["ln", "g3"], ["g4"]),
        helper.make_node("Mul", ["g4", "half"], ["y"]),
    ]
    inits = [
        c("two", 2.0),
        c("eps", 1e-6),
        c("gamma", np.ones(32)),
        c("beta", np.zeros(32)),
        c("sqrt2", 1.4142135),
        c("one", 1.0),
        c("half", 0.5),
    ]
    ks, unknown = _kernels(_onnx(nodes, [x], inits))
    assert unknown == []
    assert [k.op for k in ks] == ["layernorm", "gelu"]
    assert len(ks[0].nodes) == 9 and len(ks[1].nodes) == 5


def test_shape_arithmetic_is_folded_not_a_kernel():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6, 6])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Concat", ["b1", "neg1"], ["shp"], axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, dtype=np.int64), "i0"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "neg1"),
    ]
    g = build_graph(_onnx(nodes, [x], inits))
    assert [n.op for n in g.nodes] == ["Reshape"]
    assert {n.op for n in g.folded} == {"Shape", "Gather", "Unsqueeze", "Concat"}
    assert g.shapes["y"] == (2, 144)


def test_unknown_op_is_reported_not_dropped():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])
    ks, unknown = _kernels(_onnx([helper.make_node("Einsum", ["x"], ["y"], equation="bij->bji")], [x]))
    assert unknown == ["Einsum"] and [k.op for k in ks] == ["unknown"]


def test_epilogue_rules_are_per_profile():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])
    w = numpy_helper.from_array(np.zeros((8, 8, 3, 3), np.float32), "w")
    bn = [numpy_helper.from_array(np.ones(8, np.float32), n) for n in ("s", "b", "m", "v")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    model = _onnx(nodes, [x], [w, *bn])
    fused, _ = _kernels(model, FusionRules(epilogues=("bias", "bn", "act")))
    eager, _ = _kernels(model, FusionRules(epilogues=()))
    assert [k.op for k in fused] == ["conv"]
    assert [k.op for k in eager] == ["conv", "elementwise", "elementwise"]


def test_corrupt_onnx_is_a_clean_error(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not a protobuf at all")
    with pytest.raises(EdgedetError, match="cannot read ONNX"):
        build_graph(p)


def test_module_recording_matches_onnx_export():
    from edgedet.models.quadranet import QuadraBlock

    block = QuadraBlock(32, 5, 2)
    a, ua = fuse(record(block, (1, 32, 14, 14)))
    b, ub = fuse(build_graph(_export(block, (1, 32, 14, 14))))
    assert ua == ub == []
    ops = lambda ks: sorted(k.op for k in ks if k.op not in ("identity", "reshape"))  # noqa: E731
    assert ops(a) == ops(b)
    assert sum(k.flops for k in a) == pytest.approx(sum(k.flops for k in b), rel=0.01)
