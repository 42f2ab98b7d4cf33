"""edgedet.BoxRPBAttention as edgedet's fused OpenVINO CPU op (online-softmax attention with the
axial box bias added tile by tile) on the real OpenVINO runtime: parity against the float64
functional form on random shapes (odd H, W, query counts off the tile sizes, a padding mask),
and the Plain-DETR OpenVINO export that uses it, records it and keeps the lowering with
--decompose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedet.bench.reproduce.boxrpb_openvino import node_model, node_weights
from edgedet.errors import EdgedetError
from edgedet.exporters import openvino as ovx
from edgedet.exporters.artifact import load_manifest
from edgedet.exporters.pipeline import ExportRequest, export_artifact
from edgedet.kernels import openvino_extension
from edgedet.kernels.boxrpb_functional import axial_bias, boxrpb_attention
from edgedet.runtimes import SessionSpec
from edgedet.runtimes import openvino as ov_runtime

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def library():
    return openvino_extension.build().library


@pytest.mark.parametrize(
    "b,q,c,heads,h,w,hidden,log8,mask_b",
    [
        (1, 13, 32, 4, 7, 9, 16, 1, 1),  # odd H, W; Q not a multiple of the 8-query block
        (2, 21, 24, 3, 5, 70, 8, 0, 2),  # W over the 64-key tile, per-image padding mask
        (1, 1, 16, 2, 1, 1, 4, 1, 1),  # a single key
    ],
)
def test_fused_boxrpb_matches_float64_reference(library, tmp_path, b, q, c, heads, h, w, hidden, log8, mask_b):
    rng = np.random.default_rng(q * h + w)
    weights = node_weights(rng, c, heads, hidden)
    stride, scale = 16.0, (c // heads) ** -0.5
    attrs = {"num_heads": heads, "height": h, "width": w, "stride": stride, "scale": scale, "log8": log8}
    ov_model = ovx.convert(node_model(b, q, c, h, w, mask_b, attrs, weights), fused=True, fused_boxrpb=True)
    assert "BoxRPBAttention" in [op.get_type_name() for op in ov_model.get_ordered_ops()]
    xml = tmp_path / "m.xml"
    ovx.save_ir(ov_model, xml, "fp32")
    assert openvino_extension.ir_needs_extension(xml)
    compiled = ovx.compile_ir(xml, "fp32", threads=2)
    feeds = {
        "query": rng.normal(0, 1, (b, q, c)).astype(np.float32),
        "boxes": rng.uniform(0.1, 0.6, (b, q, 4)).astype(np.float32),
        "memory_k": rng.normal(0, 1, (b, h * w, c)).astype(np.float32),
        "memory_v": rng.normal(0, 1, (b, h * w, c)).astype(np.float32),
        "mask": (rng.uniform(size=(mask_b, h * w)) < 0.2).astype(np.float32),
    }
    got = ovx.run_compiled(compiled, feeds)[0]
    t = {k: torch.from_numpy(v).double() for k, v in feeds.items()}
    ref = boxrpb_attention(t["query"], t["boxes"], t["memory_k"], t["memory_v"], t["mask"],
                           [torch.from_numpy(a).double() for a in weights], num_heads=heads, height=h, width=w,
                           stride=stride, log8=bool(log8)).numpy()
    assert got.shape == ref.shape
    # fp32 logits of magnitude L carry rounding ~L·2⁻²⁴ into the softmax: the tolerance grows
    # with L past 256 (linear-encoded pixel offsets give axial biases in the thousands)
    bx, by = axial_bias(t["boxes"], [torch.from_numpy(a).double() for a in weights[8:11]],
                        [torch.from_numpy(a).double() for a in weights[11:14]], h, w, stride, bool(log8))
    logit = float(bx.abs().max() + by.abs().max()) + float(np.abs(feeds["query"]).max()) * c
    tol = 1e-5 * max(1.0, float(np.abs(ref).max())) * max(1.0, logit / 256)
    assert np.abs(got - ref).max() <= tol
    lowered = ovx.convert(node_model(b, q, c, h, w, mask_b, attrs, weights), fused=False)
    assert "BoxRPBAttention" not in [op.get_type_name() for op in lowered.get_ordered_ops()]


def test_plain_detr_openvino_export_fuses_boxrpb_when_asked(library, tmp_path):
    """Opt-in (`--fused-boxrpb`: the op is measured slower than the lowering); the default
    export inlines BoxRPB into standard ops and keeps QuadraConv fused."""
    overrides = {"preset": "cpu", "dec_layers": 2, "enc_layers": 0}
    out = tmp_path / "ov"
    res = export_artifact(ExportRequest(model="plain-detr-quadranet25-xxs", format="openvino", out=out,
                                        input_size=64, model_overrides=overrides, fused_boxrpb=True))
    assert res.parity.passed and res.parity.max_abs_err <= 1e-4
    m = load_manifest(out)
    how = m.data["custom_ops_converted"]
    assert "fused edgedet.BoxRPBAttention" in how["edgedet.BoxRPBAttention"]
    assert "edgedet.BoxRPBAttention" in m.data["runtime"]["extensions"][0]["ops"]
    assert (out / "model.xml").read_text().count('type="BoxRPBAttention"') == 2
    default = tmp_path / "default"
    res = export_artifact(ExportRequest(model="plain-detr-quadranet25-xxs", format="openvino", out=default,
                                        input_size=64, model_overrides=overrides))
    assert 'type="BoxRPBAttention"' not in (default / "model.xml").read_text()
    how = load_manifest(default).data["custom_ops_converted"]
    assert how["edgedet.BoxRPBAttention"] == "inlined to standard ONNX ops"
    session = ov_runtime.open(SessionSpec(runtime="openvino", model=str(out / "model.xml"), batch=1))
    assert session.info["extension"] == str(out / m.data["runtime"]["extensions"][0]["library"])
    session._infer()  # bench loads the artifact's library and runs the fused node


def test_fused_boxrpb_is_refused_outside_openvino(tmp_path):
    for fmt, dec in (("onnx", False), ("openvino", True)):
        with pytest.raises(EdgedetError, match="--fused-boxrpb applies to --format openvino"):
            ExportRequest(model="plain-detr-quadranet25-xxs", format=fmt, out=tmp_path, decompose=dec,
                          fused_boxrpb=True).validate()
