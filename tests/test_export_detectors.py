"""Detector exports: NMS-free fixed-size outputs, BoxRPB as a custom node (Plain-DETR),
ASAG's static mode with ONNX NonMaxSuppression / RoiAlign."""

from __future__ import annotations

import collections

import onnx
import pytest
import torch

from edgedet.exporters.artifact import load_manifest
from edgedet.exporters.pipeline import ExportRequest, export_artifact

torch.set_num_threads(1)

SMALL_DETR = {"preset": "cpu", "dec_layers": 2, "enc_layers": 0}
SMALL_ASAG = {"mode": "static", "dim": 32, "ffn_dim": 64, "num_aux_decoders": 0, "num_classes": 5}


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("extra", [{}, {"distinct_queries_iou": 0.5}])
def test_plain_detr_onnx_boxrpb_node_and_fixed_outputs(tmp_path, extra):
    out = tmp_path / "pdetr"
    res = export_artifact(
        ExportRequest(
            model="plain-detr-quadranet25-xxs",
            format="onnx",
            out=out,
            input_size=64,
            model_overrides={**SMALL_DETR, **extra},
        )
    )
    assert res.parity.passed and res.parity.max_abs_err <= 1e-4
    m = load_manifest(out)
    assert m.custom_ops == ["edgedet.BoxRPBAttention", "edgedet.QuadraConv"]
    assert [o["name"] for o in m.outputs] == ["labels", "boxes", "scores"]
    assert [o["shape"] for o in m.outputs] == [[1, 100], [1, 100, 4], [1, 100]]
    assert m.outputs[0]["dtype"] == "int64"
    ops = _ops(out / "model.onnx")
    # NMS-free outputs; distinct queries add one NMS over the proposals
    assert ops["BoxRPBAttention"] == 2 and ops["NonMaxSuppression"] == len(extra)
    assert m.data["source"]["kind"] == "detector"


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"nms_iou": 0.7, "anchor_nms_iou": 0.6}])
def test_asag_static_onnx_uses_nms_and_roialign(tmp_path, extra):
    out = tmp_path / "asag"
    res = export_artifact(
        ExportRequest(
            model="asag-quadranet25-xxs",
            format="onnx",
            out=out,
            input_size=128,
            model_overrides={**SMALL_ASAG, **extra},
            dynamic_batch=True,
        )
    )
    assert res.parity.passed and [c.batch for c in res.parity.cases] == [1, 2, 3]
    ops = _ops(out / "model.onnx")
    assert ops["NonMaxSuppression"] == 2 + len(extra) and ops["RoiAlign"] >= 1 and ops["QuadraConv"] == 25
    assert [o["shape"][1] for o in load_manifest(out).outputs] == [100, 100, 100]


@pytest.mark.slow
def test_asag_static_openvino(tmp_path):
    res = export_artifact(
        ExportRequest(
            model="asag-quadranet25-xxs",
            format="openvino",
            out=tmp_path / "ov",
            input_size=128,
            model_overrides=SMALL_ASAG,
        )
    )
    assert res.parity.passed
