"""Set-prediction losses for DETR-style detectors: sigmoid focal classification, L1 and GIoU
on matched boxes, summed over the final output, the auxiliary (per-decoder-layer) outputs,
the encoder proposals (two-stage) and the hybrid one-to-many branch.

`outputs` dict understood by `SetCriterion`:
  pred_logits (B,Q,K), pred_boxes (B,Q,4) normalised cxcywh      final layer, one-to-one
  aux_outputs  [ {pred_logits, pred_boxes}, ... ]                earlier decoder layers
  enc_outputs  {pred_logits, pred_boxes}                         two-stage proposals,
                                                                 class-agnostic: every target
                                                                 counts as class 0 (objectness)
  one2many     {pred_logits, pred_boxes, aux_outputs}            hybrid branch, matched to
                                                                 targets repeated k times
Losses are normalised by the number of target boxes in the batch (at least 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.models.matcher import HungarianMatcher, Match, repeat_targets
from edgedet.ops.boxes import box_cxcywh_to_xyxy, elementwise_giou


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       weight: Tensor | None = None) -> Tensor:
    """Element-wise focal loss −α_t(1−p_t)^γ log p_t on sigmoid logits (same shape as targets);
    `weight` (broadcastable) rescales elements, e.g. per-query weights. Returns the sum."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if weight is not None:
        loss = loss * weight
    return loss.sum()


def box_losses(pred_boxes: Tensor, tgt_boxes: Tensor, num_boxes: float) -> dict[str, Tensor]:
    """L1 (cxcywh) and 1 − GIoU summed over matched pairs, divided by num_boxes."""
    l1 = F.l1_loss(pred_boxes, tgt_boxes, reduction="none").sum()
    giou = (1 - elementwise_giou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(tgt_boxes))).sum()
    return {"loss_bbox": l1 / num_boxes, "loss_giou": giou / num_boxes}


class SetCriterion(nn.Module):
    """Hungarian-matched focal + L1 + GIoU over every output set a detector returns."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None,
                 weights: dict[str, float] | None = None, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, one2many_k: int = 6, one2many_weight: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = weights or {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.one2many_k, self.one2many_weight = one2many_k, one2many_weight

    def single(self, out: dict, targets: list[dict], num_boxes: float) -> dict[str, Tensor]:
        """Unweighted loss terms of one output set."""
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        matches = self.matcher(logits, boxes, targets)
        b_idx, q_idx, labels, tboxes = _gather(matches, targets, logits.device)
        onehot = torch.zeros_like(logits)
        onehot[b_idx, q_idx, labels] = 1.0
        ce = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma)
        losses = {"loss_ce": ce / num_boxes}
        losses.update(box_losses(boxes[b_idx, q_idx], tboxes, num_boxes))
        return losses

    def _set_with_aux(self, out: dict, targets: list[dict], num_boxes: float, tag: str) -> dict[str, Tensor]:
        losses = {f"{k}{tag}": v for k, v in self.single(out, targets, num_boxes).items()}
        for i, aux in enumerate(out.get("aux_outputs", [])):
            losses.update({f"{k}{tag}_{i}": v for k, v in self.single(aux, targets, num_boxes).items()})
        return losses

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        """Every term (named e.g. loss_ce, loss_bbox_2, loss_giou_enc, loss_ce_o2m_1) plus
        "loss", their weighted sum, the quantity to backpropagate."""
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        losses = self._set_with_aux(outputs, targets, num_boxes, "")
        if "enc_outputs" in outputs:
            enc = outputs["enc_outputs"]
            agnostic = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            losses.update({f"{k}_enc": v for k, v in self.single(enc, agnostic, num_boxes).items()})
        if "one2many" in outputs:
            rep = repeat_targets(targets, self.one2many_k)
            o2m = self._set_with_aux(outputs["one2many"], rep, num_boxes * self.one2many_k, "_o2m")
            losses.update({k: v * self.one2many_weight for k, v in o2m.items()})
        total = sum(self.weights[_base(k)] * v for k, v in losses.items())
        losses["loss"] = total
        return losses


def _base(name: str) -> str:
    for base in ("loss_ce", "loss_bbox", "loss_giou"):
        if name.startswith(base):
            return base
    raise KeyError(name)


def _gather(matches: list[Match], targets: list[dict], device: torch.device):
    b_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(matches)]).to(device)
    q_idx = torch.cat([q for q, _ in matches]).to(device)
    pairs = list(zip(targets, matches, strict=True))
    labels = torch.cat([t["labels"][ti.to(t["labels"].device)] for t, (_, ti) in pairs])
    tboxes = torch.cat([t["boxes"][ti.to(t["boxes"].device)] for t, (_, ti) in pairs])
    return b_idx, q_idx, labels.to(device), tboxes.to(device)
