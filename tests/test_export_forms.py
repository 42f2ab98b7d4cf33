"""The export seam: export mode swaps an op for every caller, including one the exporter has
never heard of (a module defined here, calling the op under its own imported name)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgedet.exporters.detection_ops_onnx import patched
from edgedet.exporters.onnx import export_onnx
from edgedet.ops.export_forms import export_form, export_forms
from edgedet.ops.nms import fixed_size_nms
from edgedet.ops.roi_align import roi_align_batched


class NewDetectorHead(nn.Module):
    """A caller written after the exporter: NMS over its boxes, then RoIAlign of the kept ones."""

    def forward(self, feat, boxes, scores):
        idx, kept = fixed_size_nms(boxes, scores, scores > 0.1, 0.5, 4)
        picked = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
        pooled = roi_align_batched(feat, picked, 2, 0.5, 2, False)
        return pooled.flatten(2) * kept[..., None].to(pooled.dtype), kept


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, 12, 2, generator=g) * 24
    wh = 2 + torch.rand(2, 12, 2, generator=g) * 8
    return torch.randn(2, 3, 16, 16, generator=g), torch.cat([xy, xy + wh], -1), torch.rand(2, 12, generator=g)


def test_a_new_caller_exports_onnx_ops_and_matches_eager():
    feat, boxes, scores = _inputs()
    head = NewDetectorHead().eval()
    with torch.no_grad():
        want = head(feat, boxes, scores)
    exp = export_onnx(head, (feat, boxes, scores), ["feat", "boxes", "scores"], ["pooled", "kept"])
    ops = {n.op_type for n in exp.model.graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    sess = ort.InferenceSession(exp.model.SerializeToString(), providers=["CPUExecutionProvider"])
    pooled, kept = sess.run(None, {"feat": feat.numpy(), "boxes": boxes.numpy(), "scores": scores.numpy()})
    assert np.array_equal(kept, want[1].numpy())
    scale = float(want[0].abs().max())
    np.testing.assert_allclose(pooled, want[0].numpy(), atol=1e-5 * scale, rtol=0)


def test_export_mode_is_scoped_and_names_are_checked():
    calls = []

    def form(*args):
        calls.append(len(args))
        return torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.bool)

    feat, boxes, scores = _inputs()
    with export_forms(fixed_size_nms=form):
        fixed_size_nms(boxes, scores, scores > 0, 0.5, 4)
    assert calls == [5] and export_form("fixed_size_nms") is None
    with patched(onnx_nms=False):  # TVM: the NMS stays as traced standard ops, RoIAlign maps
        assert export_form("fixed_size_nms") is None and export_form("roi_align_batched") is not None
    with pytest.raises(ValueError, match="no op conv"):
        with export_forms(conv=form):
            pass
