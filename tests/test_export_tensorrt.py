"""TensorRT plugin kernels (Triton) on the CPU through TRITON_INTERPRET=1 against PyTorch,
the plugin-ready ONNX, and the engine build (GPU only)."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton reads this when it is imported and when kernels are decorated; without a GPU the
    # kernels run in its CPU interpreter (kept for the session: triton cannot switch back).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from edgedet.exporters.boxrpb_onnx import BoxRPBExport  # noqa: E402
from edgedet.exporters.onnx import export_onnx  # noqa: E402
from edgedet.exporters.prepare import prepare  # noqa: E402
from edgedet.kernels import trt_plugins  # noqa: E402
from edgedet.kernels.quadratic import quadratic_conv2d  # noqa: E402
from edgedet.models.boxrpb import BoxRPBCrossAttention  # noqa: E402

torch.set_num_threads(1)


def _kernels():
    return (
        importlib.import_module("edgedet.kernels.triton_quadratic"),
        importlib.import_module("edgedet.kernels.triton_boxrpb"),
    )


@pytest.mark.parametrize(
    "c,h,w,k,stride,dilation", [(3, 9, 7, 3, 1, 1), (2, 8, 8, 5, 2, 1), (2, 7, 9, 3, 1, 2)]
)
def test_triton_quadconv_matches_reference(c, h, w, k, stride, dilation):
    tq, _ = _kernels()
    g = torch.Generator().manual_seed(c * 100 + k)
    x = torch.randn(2, c, h, w, generator=g)
    wa, wb, wc = (torch.randn(c, 1, k, k, generator=g) * 0.3 for _ in range(3))
    bias = torch.randn(c, generator=g)
    got = tq.quadconv_triton(x, wa, wb, wc, bias, stride, None, dilation, block=16)
    ref = quadratic_conv2d(x, wa, wb, wc, bias, stride, "same", dilation, memory_saving=False)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rpe_type", ["linear", "abs_log8"])
def test_triton_boxrpb_matches_module(rpe_type):
    _, tb = _kernels()
    torch.manual_seed(0)
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16, rpe_type=rpe_type, feature_stride=16).eval()
    b, q, h, w = 2, 5, 3, 4
    query, boxes = torch.randn(b, q, 32), torch.rand(b, q, 4) * 0.5 + 0.2
    mk, mv = torch.randn(b, h * w, 32), torch.randn(b, h * w, 32)
    mask = torch.zeros(b, h * w)
    mask[1, -3:] = 1
    weights = BoxRPBExport(attn).weights()
    with torch.no_grad():
        got = tb.boxrpb_attention(
            query,
            boxes,
            mk,
            mv,
            mask,
            weights,
            num_heads=4,
            height=h,
            width=w,
            stride=16.0,
            log8=rpe_type == "abs_log8",
        )
        ref = attn(query, boxes, mk, mv, (h, w), mask.bool())
    assert torch.allclose(got, ref, atol=1e-5)


def test_plugin_onnx_keeps_nodes_for_the_parser():
    torch.manual_seed(0)
    from edgedet import models

    form = prepare(models.create("quadranet25-xxs").eval(), 64)
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    m = trt_plugins.plugin_onnx(ex.model)
    assert len(m.functions) == 0 and len(ex.model.functions) == 1  # the original is untouched
    nodes = [n for n in m.graph.node if n.domain == "edgedet"]
    assert nodes and all({a.name: a.s for a in n.attribute}["plugin_namespace"] == b"edgedet" for n in nodes)


def test_shape_profiles():
    from edgedet.exporters.tensorrt import batch_profiles

    (p,) = batch_profiles(["image"], (1, 3, 64, 64), dynamic=True, max_batch=8)
    assert (p.min, p.opt, p.max) == ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))
    (s,) = batch_profiles(["image"], (1, 3, 64, 64), dynamic=False)
    assert s.min == s.opt == s.max == (1, 3, 64, 64)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_build(tmp_path, precision):
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engine build needs a CUDA GPU")
    pytest.importorskip(
        "tensorrt", reason="TensorRT engine build needs TensorRT (pip install 'edgedet[tensorrt]')"
    )
    from edgedet.exporters.pipeline import ExportRequest, export_artifact

    res = export_artifact(
        ExportRequest(
            model="quadranet25-xxs",
            format="tensorrt",
            out=tmp_path / "trt",
            input_size=64,
            precision=precision,
            dynamic_batch=True,
        )
    )
    assert {"model.engine", "model.onnx", "timing.cache"} <= set(res.manifest["files"])
    assert res.parity.passed
