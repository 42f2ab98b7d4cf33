"""Export forms of the detectors: BoxRPB attention as one custom node, fixed-size outputs.

Plain-DETR exports NMS-free: the eval forward's `pred_logits`/`pred_boxes` go through
`postprocess` (top-k over query×class sigmoid scores) to `labels` (B,k), `boxes` (B,k,4)
xyxy in input pixels, `scores` (B,k). ASAG exports through its static mode, whose eval
outputs already hold fixed-size top-k `scores/labels/boxes` (boxes normalised cxcywh).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgedet.exporters.boxrpb_onnx import BoxRPBExport
from edgedet.models.asag import ASAG
from edgedet.models.boxrpb import BoxRPBCrossAttention
from edgedet.models.plain_detr import PlainDETR, postprocess


def is_detector(model: nn.Module) -> bool:
    return isinstance(model, PlainDETR | ASAG)


def swap(child: nn.Module) -> tuple[nn.Module, list[str]] | None:
    """Export form of one detector layer, or None when it has none."""
    if isinstance(child, BoxRPBCrossAttention):
        return BoxRPBExport(child), [BoxRPBExport.onnx_op]
    return None


class DetectorOutputs(nn.Module):
    """image (B,3,H,W) → labels (B,k) int64, boxes (B,k,4), scores (B,k)."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()

        self.det = det
        self.asag = isinstance(det, ASAG)
        if self.asag and det.mode != "static":
            det.mode = "static"  # the fixed-shape form; equal to eager within its limits

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.det(image)
        if self.asag:
            return out["labels"], out["boxes"], out["scores"]

        h, w = image.shape[-2:]
        sizes = torch.tensor([[h, w]], dtype=image.dtype).expand(image.shape[0], 2)
        det = postprocess(out, sizes)
        return det["labels"], det["boxes"], det["scores"]
