"""ONNX export: edgedet custom nodes carried as local functions, decomposition, ORT parity."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.inliner
import pytest
import torch
from torch import nn

from edgedet import models
from edgedet.exporters.boxrpb_onnx import BoxRPBExport
from edgedet.exporters.onnx import export_onnx, run_onnxruntime, used_custom_ops
from edgedet.exporters.prepare import prepare
from edgedet.kernels import QuadraConv2d
from edgedet.models.boxrpb import BoxRPBCrossAttention

torch.set_num_threads(1)


def _ort(model, feeds):
    return run_onnxruntime(model.SerializeToString(), feeds)


@pytest.fixture(scope="module")
def xxs():
    torch.manual_seed(0)
    return models.create("quadranet25-xxs").eval()


def test_quadranet_exports_quadraconv_nodes_with_function(xxs):
    form = prepare(xxs, 64)
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    m = ex.model
    n_quadra = sum(1 for n in m.graph.node if (n.domain, n.op_type) == ("edgedet", "QuadraConv"))
    assert n_quadra == 25  # one per QuadraBlock of QuadraNet25
    assert ex.custom_ops == ["edgedet.QuadraConv"] == used_custom_ops(m)
    assert [(f.domain, f.name) for f in m.functions] == [("edgedet", "QuadraConv")]
    assert {o.domain: o.version for o in m.opset_import}[""] >= 17
    assert any(n.op_type == "LayerNormalization" for n in m.graph.node)
    onnx.checker.check_model(m, full_check=True)
    x = form.example(1, seed=3)[0]
    with torch.no_grad():
        ref = xxs(x).numpy()
    got = _ort(m, {"image": x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-4
    # any consumer can inline the function: the result has standard ops only and equal values
    inl = onnx.inliner.inline_local_functions(m)
    assert all(n.domain in ("", "ai.onnx") for n in inl.graph.node)
    assert np.abs(_ort(inl, {"image": x.numpy()})[0] - got).max() < 1e-5


def test_decompose_and_dynamic_batch(xxs):
    form = prepare(xxs, 64)
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"], dynamic_batch=True, decompose=True)
    assert ex.custom_ops == [] and len(ex.model.functions) == 0
    assert all(n.domain in ("", "ai.onnx") for n in ex.model.graph.node)
    assert all(o.domain != "edgedet" for o in ex.model.opset_import)
    assert ex.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for b in (1, 3):
        x = form.example(b, seed=b)[0]
        with torch.no_grad():
            ref = xxs(x).numpy()
        assert np.abs(_ort(ex.model, {"image": x.numpy()})[0] - ref).max() < 1e-4


@pytest.mark.parametrize("stride,dilation,k", [(1, 1, 3), (2, 1, 5), (1, 2, 3)])
def test_quadraconv_attributes(stride, dilation, k):
    torch.manual_seed(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = QuadraConv2d(4, k, stride=stride, dilation=dilation, bias=False)

        def forward(self, x):
            return self.q(x)

    net = Net().eval()
    form = prepare(net, 32, in_chans=4)
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    node = next(n for n in ex.model.graph.node if n.op_type == "QuadraConv")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["strides"] == [stride, stride] and attrs["dilations"] == [dilation, dilation]
    assert attrs["group"] == 4
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        ref = net(x).numpy()
    got = _ort(ex.model, {"image": x.numpy()})[0]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


class _Cross(nn.Module):
    def __init__(self, attn: nn.Module, hw: tuple[int, int], masked: bool):
        super().__init__()
        self.attn, self.hw, self.masked = attn, hw, masked

    def forward(self, query, boxes, mem):
        mask = None
        if self.masked:  # last column of the feature map is padding
            mask = torch.zeros(query.shape[0], self.hw[0], self.hw[1], dtype=torch.bool)
            mask[..., -1] = True
            mask = mask.flatten(1)
        return self.attn(query, boxes, mem + 1.0, mem, self.hw, mask)


@pytest.mark.parametrize("rpe_type,masked", [("linear", False), ("abs_log8", True)])
def test_boxrpb_attention_node(rpe_type, masked):
    torch.manual_seed(2)
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16, rpe_type=rpe_type, feature_stride=16).eval()
    hw = (3, 5)
    eager = _Cross(attn, hw, masked).eval()
    export_form = _Cross(BoxRPBExport(attn), hw, masked).eval()
    q, boxes, mem = torch.randn(2, 6, 32), torch.rand(2, 6, 4) * 0.5 + 0.2, torch.randn(2, 15, 32)
    buf = export_onnx(export_form, (q, boxes, mem), ["query", "boxes", "memory"], ["out"], dynamic_batch=True)
    assert buf.custom_ops == ["edgedet.BoxRPBAttention"]
    node = next(n for n in buf.model.graph.node if n.op_type == "BoxRPBAttention")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert (attrs["num_heads"], attrs["height"], attrs["width"], attrs["log8"]) == (
        4,
        3,
        5,
        int(rpe_type != "linear"),
    )
    with torch.no_grad():
        ref = eager(q, boxes, mem).numpy()
    feeds = {"query": q.numpy(), "boxes": boxes.numpy(), "memory": mem.numpy()}
    got = _ort(buf.model, feeds)[0]
    assert np.abs(got - ref).max() < 1e-4
    dec = onnx.inliner.inline_local_functions(buf.model)
    assert np.abs(_ort(dec, feeds)[0] - ref).max() < 1e-4
