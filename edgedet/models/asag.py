"""ASAG detector (ASAG-S): backbone → FPN (P3–P6) → adaptive sparse anchors → query
initialiser → one Sparse R-CNN dynamic decoder layer (+ parallel auxiliary decoders in
training, the paper's trick for training a single layer).

`model(images, masks, targets=None)` → outputs dict; `model.loss(outputs, targets)`.
masks (B,H,W) are True on padding; boxes are normalised cxcywh of each image's unpadded
extent. `mode` "dynamic" (eager, as the paper) or "static" (fixed shapes, for export).
In eval the outputs also hold fixed-size top-k `scores`, `labels`, `boxes` (B,top_k);
with `nms_iou` set, class-wise NMS then zeroes the suppressed entries (the
official implementation's `--nms`, which its 300-query and CrowdHuman settings turn on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from edgedet.errors import EdgedetError
from edgedet.models.asag_anchor import PATCH, AnchorConfig, AnchorGenerator
from edgedet.models.asag_criterion import ASAGCriterion
from edgedet.models.asag_query import QueryInit
from edgedet.models.dynamic_head import DynamicDecoderLayer
from edgedet.models.fpn import FPN
from edgedet.models.registry import create
from edgedet.ops.boxes import box_cxcywh_to_xyxy
from edgedet.ops.nms import fixed_size_nms, separate_groups

MODES = ("dynamic", "static")


def image_wh_from_masks(masks: Tensor | None, images: Tensor) -> Tensor:
    """(B,2) unpadded (width, height) in pixels: padding is bottom/right, True in masks."""
    bsz, _, h, w = images.shape
    if masks is None:
        return images.new_tensor([[w, h]]).expand(bsz, 2).clone()
    inside = ~masks
    return torch.stack([inside.sum(2).amax(1), inside.sum(1).amax(1)], 1).to(images.dtype).clamp(min=1)


def drop_trailing_padding(anchors: Tensor, scores: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cut the anchor slots after the last one any image of the batch uses. Padding queries
    are masked everywhere (attention keys, matching, losses), so in training they only cost
    time; the anchor NMS leaves many (kept anchors first, the rest padding)."""
    used = torch.nonzero(valid.any(0)).flatten()
    n = int(used[-1]) + 1 if len(used) else 1
    return anchors[:, :n], scores[:, :n], valid[:, :n]


@dataclass
class ASAGConfig:
    """ASAG-S sizes and switches (`build_asag` fills it from a preset and overrides)."""

    num_classes: int = 80
    dim: int = 256
    ffn_dim: int = 2048
    dim_dynamic: int = 64
    max_anchors: int = 200
    num_decoder_layers: int = 1
    num_aux_decoders: int = 3
    mode: str = "dynamic"  # "dynamic" (eager, as the paper) or "static" (fixed shapes, for export)
    top_k: int = 100
    max_patches: tuple[int, int] = (16, 16)  # static probed-patch slots on P4, P3
    patch: int = PATCH  # anchor generator's patch side in feature cells
    nms_iou: float | None = None  # class-wise NMS of the detections (None: NMS-free, the paper)
    anchor_nms_iou: float | None = None  # class-agnostic NMS of the anchors (not in the paper)
    anchor_nms_at_inference: bool = True

    def validate(self) -> None:
        if self.mode not in MODES:
            raise EdgedetError(f"asag mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 2 <= self.patch <= PATCH:
            raise EdgedetError(f"asag patch must be between 2 and {PATCH} cells, got {self.patch}")
        for name, v in (("nms_iou", self.nms_iou), ("anchor_nms_iou", self.anchor_nms_iou)):
            if v is not None and not 0.0 < v < 1.0:
                raise EdgedetError(f"asag {name} must be between 0 and 1 (exclusive), got {v}")
        if self.num_decoder_layers < 1 or self.num_aux_decoders < 0:
            raise EdgedetError("asag needs num_decoder_layers ≥ 1 and num_aux_decoders ≥ 0")
        if self.dim % 8:
            raise EdgedetError(f"asag dim must be a multiple of 8 (8 attention heads), got {self.dim}")

    def anchor_config(self) -> AnchorConfig:
        return replace(AnchorConfig(), max_patches=tuple(self.max_patches), max_anchors=self.max_anchors,
                       patch=self.patch)


class ASAG(nn.Module):
    def __init__(self, backbone: nn.Module, cfg: ASAGConfig):
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
        self.cfg = cfg
        self.nms_iou, self.anchor_nms_iou = cfg.nms_iou, cfg.anchor_nms_iou
        self.anchor_nms_at_inference = cfg.anchor_nms_at_inference
        self.backbone = backbone
        self.num_classes, self.mode, self.top_k = cfg.num_classes, cfg.mode, cfg.top_k
        num_classes, dim, ffn_dim, dim_dynamic = cfg.num_classes, cfg.dim, cfg.ffn_dim, cfg.dim_dynamic
        self.fpn = FPN(list(backbone.feature_channels[1:]), dim)
        self.anchor_generator = AnchorGenerator(dim, cfg.anchor_config())
        self.query_init = QueryInit(dim, num_classes, ffn_dim=ffn_dim, strides=FPN.strides)
        self.decoder = nn.ModuleList(
            DynamicDecoderLayer(dim, num_classes, ffn_dim, strides=FPN.strides, dim_dynamic=dim_dynamic)
            for _ in range(cfg.num_decoder_layers)
        )
        self.aux_decoders = nn.ModuleList(
            DynamicDecoderLayer(dim, num_classes, ffn_dim, strides=FPN.strides, dim_dynamic=dim_dynamic)
            for _ in range(cfg.num_aux_decoders)
        )
        self._criterion = None

    def forward(self, images: Tensor, masks: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        image_wh = image_wh_from_masks(masks, images)
        feats = self.fpn(self.backbone.forward_features(images)[1:])
        anch = self.anchor_generator(feats[:3], image_wh, self.mode, targets)
        anchors, anchor_scores, valid = anch.anchors, anch.scores, anch.valid
        if self.anchor_nms_iou is not None and (self.training or self.anchor_nms_at_inference):
            anchors, anchor_scores, valid = self.distinct_anchors(anchors, anchor_scores, valid)
        if self.training:
            anchors, anchor_scores, valid = drop_trailing_padding(anchors, anchor_scores, valid)
        static = self.mode == "static" and not self.training
        init_logits, proposals, query = self.query_init(feats, anchors, image_wh, valid, static)
        boxes, q = proposals.detach(), query
        stages = []
        # The first decoder layer and the parallel auxiliary decoders pool the same boxes.
        shared_roi = self.decoder[0].pool(feats, boxes, image_wh, static)
        for i, layer in enumerate(self.decoder):  # cascade: each layer refines the previous one's boxes
            logits, pred, q = layer(feats, boxes, q, image_wh, valid, static, shared_roi if i == 0 else None)
            stages.append({"pred_logits": logits, "pred_boxes": pred})
            boxes = pred.detach()
        out = dict(stages[-1])
        out.update(
            valid=valid,
            anchors=anchors,
            anchor_scores=anchor_scores,
            image_wh=image_wh,
            init={"pred_logits": init_logits, "pred_boxes": proposals},
        )
        if self.training:
            aux = stages[:-1]
            for layer in self.aux_decoders:  # parallel: same proposals and queries as the main head
                logits, pred, _ = layer(feats, proposals.detach(), query, image_wh, valid, roi=shared_roi)
                aux.append({"pred_logits": logits, "pred_boxes": pred})
            out["aux_outputs"] = aux
            out["anchor_stages"] = anch.stages
        else:
            # padding queries: no score, zero box (so both modes agree on every real detection)
            out["pred_logits"] = out["pred_logits"].masked_fill(~valid[..., None], -1e4)
            out["pred_boxes"] = out["pred_boxes"].masked_fill(~valid[..., None], 0.0)
            out.update(self.detections(out["pred_logits"], out["pred_boxes"]))
        return out

    def detections(self, logits: Tensor, boxes: Tensor, top_k: int | None = None) -> dict[str, Tensor]:
        """The fixed-size top-k detections, then (with `nms_iou`) class-wise NMS over them."""
        det = self.select_top_k(logits, boxes, top_k)
        if self.nms_iou is not None:
            det = self.suppress_duplicates(det["scores"], det["labels"], det["boxes"])
        return det

    def distinct_anchors(self, anchors: Tensor, scores: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Class-agnostic NMS over the generated anchors (pixels, cxcywh) before they become
        queries: survivors first by score, the rest marked invalid (fixed shapes)."""
        idx, kept = fixed_size_nms(box_cxcywh_to_xyxy(anchors), scores, valid, self.anchor_nms_iou,
                                   anchors.shape[1])
        return torch.gather(anchors, 1, idx[..., None].expand(-1, -1, 4)), torch.gather(scores, 1, idx), kept

    def suppress_duplicates(self, scores: Tensor, labels: Tensor, boxes: Tensor) -> dict[str, Tensor]:
        """Class-wise NMS over the top-k detections with static shapes: kept ones first by
        score, then zeros (score, label, box) where suppressed ones were (exports as ONNX
        NonMaxSuppression)."""
        xyxy = separate_groups(box_cxcywh_to_xyxy(boxes), labels)
        idx, kept = fixed_size_nms(xyxy, scores, scores > 0, self.nms_iou, scores.shape[1])
        # suppressed slots are zeroed whole: which dropped entry fills them differs by runtime
        return {
            "scores": torch.gather(scores, 1, idx) * kept.to(scores.dtype),
            "labels": torch.gather(labels, 1, idx) * kept.to(labels.dtype),
            "boxes": torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4)) * kept[..., None].to(boxes.dtype),
        }

    def select_top_k(self, logits: Tensor, boxes: Tensor, top_k: int | None = None) -> dict[str, Tensor]:
        """Fixed-size detections: the top_k (query, class) pairs by sigmoid score; boxes
        normalised cxcywh."""
        bsz, nq, nc = logits.shape
        k = min(top_k or self.top_k, nq * nc)
        scores, idx = torch.topk(logits.sigmoid().flatten(1), k, dim=1)
        query = torch.div(idx, nc, rounding_mode="floor")
        return {
            "scores": scores,
            "labels": idx % nc,
            "boxes": torch.gather(boxes, 1, query[..., None].expand(-1, -1, 4)),
        }

    def postprocess(self, outputs: dict, target_sizes: Tensor, top_k: int = 100) -> dict[str, Tensor]:
        """Fixed-size `scores`, `labels` (B,k) and `boxes` (B,k,4) xyxy in pixels of
        target_sizes (B,2) = (h, w)."""
        det = (
            outputs
            if "scores" in outputs and top_k == self.top_k
            else self.detections(outputs["pred_logits"], outputs["pred_boxes"], top_k)
        )
        h, w = target_sizes.to(det["boxes"].dtype).unbind(-1)
        xyxy = box_cxcywh_to_xyxy(det["boxes"]) * torch.stack([w, h, w, h], -1)[:, None, :]
        return {"scores": det["scores"], "labels": det["labels"], "boxes": xyxy}

    def loss(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        if self._criterion is None:
            self._criterion = ASAGCriterion(self.num_classes)
        return self._criterion(outputs, targets)


PRESETS = {
    "paper": {"dim": 256, "ffn_dim": 2048, "max_anchors": 200, "dim_dynamic": 64},  # the official sizes
    "cpu": {"dim": 64, "ffn_dim": 512, "max_anchors": 100, "dim_dynamic": 16},  # small images, CPU
}


def build_asag(
    backbone_name: str,
    num_classes: int = 80,
    preset: str = "paper",
    dim: int | None = None,
    ffn_dim: int | None = None,
    max_anchors: int | None = None,
    num_decoder_layers: int = 1,
    num_aux_decoders: int = 3,
    mode: str = "dynamic",
    top_k: int = 100,
    max_patches: tuple[int, int] = (16, 16),
    backbone_options: dict | None = None,
    patch: int = PATCH,
    nms_iou: float | None = None,
    anchor_nms_iou: float | None = None,
    anchor_nms_at_inference: bool = True,
) -> ASAG:
    """`asag-<backbone>`: any edgedet model with forward_features (strides 4/8/16/32).
    `preset` "paper" (official sizes; needed to load official checkpoints) or "cpu";
    dim / ffn_dim / max_anchors override the preset; `backbone_options` go to the backbone's
    constructor (e.g. memory_saving=False: faster training, more memory); `patch` is the
    anchor generator's patch side in feature cells (the paper's 15 suits ~800-px images);
    `nms_iou` turns on class-wise NMS of the detections at that IoU (off: the paper's NMS-free
    output; the official code uses 0.7 where it turns NMS on); `anchor_nms_iou` a
    class-agnostic NMS of the anchors before they become queries (not in the paper), in
    training and, unless `anchor_nms_at_inference` is False, at inference."""
    if preset not in PRESETS:
        raise EdgedetError(f"asag preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    sizes = {**PRESETS[preset], **{k: v for k, v in (("dim", dim), ("ffn_dim", ffn_dim),
                                                        ("max_anchors", max_anchors)) if v is not None}}
    cfg = ASAGConfig(num_classes=num_classes, num_decoder_layers=num_decoder_layers,
                     num_aux_decoders=num_aux_decoders, mode=mode, top_k=top_k, max_patches=tuple(max_patches),
                     patch=patch, nms_iou=nms_iou, anchor_nms_iou=anchor_nms_iou,
                     anchor_nms_at_inference=anchor_nms_at_inference, **sizes)
    cfg.validate()
    try:
        backbone = create(backbone_name, **(backbone_options or {}))
    except EdgedetError as e:
        raise EdgedetError(f"ASAG backbone: {e}") from None
    if not hasattr(backbone, "forward_features") or not hasattr(backbone, "feature_channels"):
        raise EdgedetError(f"backbone '{backbone_name}' has no forward_features/feature_channels")
    if list(getattr(backbone, "feature_strides", [4, 8, 16, 32]))[-3:] != [8, 16, 32]:
        raise EdgedetError(
            f"backbone '{backbone_name}' must give stride 8/16/32 stages, has {backbone.feature_strides}"
        )
    return ASAG(backbone, cfg)
