"""ASAG's training losses: query-weighted set losses for the decoder outputs and the query
initialiser, and class-agnostic anchor losses for every anchor-generator stage.

Decoder / query initialiser (Hungarian-matched over the valid queries): for a matched query
with score s on its target class and IoU u with its target,
  w_pos = σ((s·u − 1/3)·4.5)/σ(3),   w_neg = σ((t(u)·s − 1/3)·4.5)/σ(3) − σ(−1.5)/σ(3),
t(u) = (1 − u²)/0.75 for u ≥ 0.5 else 1; classification = w_pos·BCE(l, 1) + w_neg·BCE(l, 0)
at (query, class), p²·BCE(l, 0) everywhere else; boxes (L1 + 1 − GIoU) weighted by w_pos.
Both are scaled by an area weight a = 4 − 3·√(wh) of the target (small objects count more).
Anchors: quality focal loss towards the IoU of each matched anchor (unmatched anchors that
overlap an object by IoU ≥ 0.5 are ignored), L1 + GIoU weighted by σ((s·u − 1/3)·4.5)/σ(3);
the P6 patch uses the inverse area weight 1 + 3·√(wh) (it is meant for large objects).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from edgedet.models.asag_anchor import StageOut
from edgedet.models.matcher import HungarianMatcher
from edgedet.ops.boxes import box_cxcywh_to_xyxy, box_iou, elementwise_giou

_NORM = 1.0 / (1.0 / (1.0 + math.exp(-3.0)))
_BASE = _NORM / (1.0 + math.exp(1.5))


def _weight_fn(x: Tensor) -> Tensor:
    return torch.sigmoid((x - 1.0 / 3) * 4.5) * _NORM


def _t(u: Tensor) -> Tensor:
    return torch.where(u < 0.5, torch.ones_like(u), (1 - u * u) / 0.75)


def _pair_iou(a: Tensor, b: Tensor) -> Tensor:
    return box_iou(box_cxcywh_to_xyxy(a), box_cxcywh_to_xyxy(b)).diagonal() if len(a) else a.new_zeros(0)


def area_weight(boxes: Tensor, inverse: bool = False, a: float = 4.0) -> Tensor:
    side = (boxes[:, 2] * boxes[:, 3]).clamp(min=0).sqrt()
    return (a - 1) * side + 1 if inverse else a - side * (a - 1)


class ASAGCriterion(nn.Module):
    def __init__(
        self,
        num_classes: int,
        weights: dict[str, float] | None = None,
        anchor_weights: dict[str, float] | None = None,
        anchor_coef: float = 1.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
        self.weights = weights or {"ce": 2.0, "bbox": 5.0, "giou": 2.0}
        self.anchor_weights = anchor_weights or {"ce": 2.0, "bbox": 1.0, "giou": 0.5}
        self.anchor_coef = anchor_coef

    @torch.no_grad()
    def match(self, logits: Tensor, boxes: Tensor, valid: Tensor, labels: Tensor, tboxes: Tensor):
        """Hungarian match of one image's valid queries → (query idx, target idx)."""
        vi = torch.nonzero(valid).flatten()
        if len(labels) == 0 or len(vi) == 0:
            e = torch.zeros(0, dtype=torch.int64, device=logits.device)
            return e, e.clone()
        cost = self.matcher.cost_matrix(logits[vi].float(), boxes[vi].float(), labels, tboxes.float())
        cost = torch.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)
        qi, ti = linear_sum_assignment(cost.cpu().numpy())
        dev = logits.device
        return vi[torch.as_tensor(qi, dtype=torch.int64, device=dev)], torch.as_tensor(
            ti, dtype=torch.int64, device=dev
        )

    def set_loss(self, logits: Tensor, boxes: Tensor, valid: Tensor, targets: list[dict], num_boxes: float):
        """Query-weighted classification + weighted box losses of one output set."""
        ce = logits.new_zeros(())
        l1 = logits.new_zeros(())
        giou = logits.new_zeros(())
        p = logits.sigmoid()
        neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none") * p.pow(
            2
        )
        neg = neg * valid[..., None].to(neg.dtype)
        for b, t in enumerate(targets):
            qi, ti = self.match(logits[b], boxes[b], valid[b], t["labels"], t["boxes"])
            if len(qi) == 0:
                ce = ce + neg[b].sum()
                continue
            lab, tb = t["labels"][ti], t["boxes"][ti]
            pb, lg = boxes[b, qi], logits[b, qi, lab]
            with torch.no_grad():
                s, u = lg.sigmoid(), _pair_iou(pb, tb)
                w_pos = _weight_fn(s * u)
                w_neg = _weight_fn(_t(u) * s) - _BASE
                a = area_weight(tb)
            pos_term = (
                F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg), reduction="none") * w_pos
                + F.binary_cross_entropy_with_logits(lg, torch.zeros_like(lg), reduction="none") * w_neg
            ) * a
            mask = torch.ones_like(neg[b])
            mask[qi, lab] = 0
            ce = ce + (neg[b] * mask).sum() + pos_term.sum()
            wb = w_pos * a
            l1 = l1 + (F.l1_loss(pb, tb, reduction="none").sum(-1) * wb).sum()
            giou = giou + ((1 - elementwise_giou(box_cxcywh_to_xyxy(pb), box_cxcywh_to_xyxy(tb))) * wb).sum()
        return {"ce": ce / num_boxes, "bbox": l1 / num_boxes, "giou": giou / num_boxes}

    def anchor_loss(
        self,
        boxes: Tensor,
        logits: Tensor,
        valid: Tensor,
        targets: list[dict],
        num_boxes: float,
        inverse_area: bool = False,
    ) -> dict[str, Tensor]:
        """Class-agnostic anchor losses of one group; boxes (B,N,4) image fractions."""
        ce = logits.new_zeros(())
        l1 = logits.new_zeros(())
        giou = logits.new_zeros(())
        for b, t in enumerate(targets):
            lg, bx, v = logits[b], boxes[b], valid[b]
            p = lg.sigmoid()
            neg = F.binary_cross_entropy_with_logits(lg, torch.zeros_like(lg), reduction="none") * p.pow(2)
            weight = v.to(lg.dtype)
            tb = t["boxes"]
            if len(tb) == 0 or not bool(v.any()):
                ce = ce + (neg * weight).sum()
                continue
            qi, ti = self.match(lg[:, None], bx, v, torch.zeros_like(t["labels"]), tb)
            with torch.no_grad():
                ious = box_iou(box_cxcywh_to_xyxy(bx), box_cxcywh_to_xyxy(tb)).amax(1)
                weight = weight * (ious < 0.5).to(lg.dtype)  # ignore good unmatched anchors
                weight[qi] = 0
                u = _pair_iou(bx[qi], tb[ti])
                a = area_weight(tb[ti], inverse=inverse_area)
                w_box = _weight_fn(p[qi] * u) * a
            q = lg[qi]
            qfl = (
                F.binary_cross_entropy_with_logits(q, u, reduction="none")
                * (u - q.sigmoid()).abs().pow(2)
                * a
            )
            ce = ce + (neg * weight).sum() + qfl.sum()
            l1 = l1 + (F.l1_loss(bx[qi], tb[ti], reduction="none").sum(-1) * w_box).sum()
            giou = (
                giou
                + (
                    (1 - elementwise_giou(box_cxcywh_to_xyxy(bx[qi]), box_cxcywh_to_xyxy(tb[ti]))) * w_box
                ).sum()
            )
        return {"ce": ce / num_boxes, "bbox": l1 / num_boxes, "giou": giou / num_boxes}

    def anchor_losses(
        self, stages: list[StageOut], targets: list[dict], image_wh: Tensor, num_boxes: float
    ) -> dict[str, Tensor]:
        coarse = stages[0]
        n5 = coarse.boxes_norm.shape[1] - coarse.boxes_norm.shape[1] // 5
        out = {
            "p6": self.anchor_loss(
                coarse.boxes_norm[:, n5:],
                coarse.logits[:, n5:],
                coarse.valid[:, n5:],
                targets,
                num_boxes,
                inverse_area=True,
            ),
            "p5": self.anchor_loss(
                coarse.boxes_norm[:, :n5], coarse.logits[:, :n5], coarse.valid[:, :n5], targets, num_boxes
            ),
        }
        for st in stages[1:]:
            out[st.level.lower()] = self.anchor_loss(
                st.boxes_norm, st.logits, st.valid, _patch_targets(targets, st, image_wh, st.patch), num_boxes
            )
        return out

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        valid = outputs["valid"]
        losses: dict[str, Tensor] = {}
        sets = [("", outputs["pred_logits"], outputs["pred_boxes"])]
        sets += [
            (f"_aux{i}", a["pred_logits"], a["pred_boxes"])
            for i, a in enumerate(outputs.get("aux_outputs", []))
        ]
        sets += [("_init", outputs["init"]["pred_logits"], outputs["init"]["pred_boxes"])]
        total = outputs["pred_logits"].new_zeros(())
        for tag, lg, bx in sets:
            for k, v in self.set_loss(lg, bx, valid, targets, num_boxes).items():
                losses[f"loss_{k}{tag}"] = v
                total = total + self.weights[k] * v
        for group, terms in self.anchor_losses(
            outputs["anchor_stages"], targets, outputs["image_wh"], num_boxes
        ).items():
            for k, v in terms.items():
                losses[f"loss_{k}_anchor_{group}"] = v
                total = total + self.anchor_coef * self.anchor_weights[k] * v
        losses["loss"] = total
        return losses


def _patch_targets(targets: list[dict], st: StageOut, image_wh: Tensor, patch: int) -> list[dict]:
    """Targets a probed level should find: small enough for its patches, centre inside a patch."""
    out = []
    half = st.stride * patch / 2
    for b, t in enumerate(targets):
        boxes = t["boxes"]
        wh = image_wh[b].to(boxes.dtype)
        px = boxes * wh.repeat(2)
        keep = (px[:, 2] < half) & (px[:, 3] < half)
        cells = px[:, :2] / st.stride  # centres in feature cells
        org = st.patch_xy[b].to(boxes.dtype)
        inside = ((cells[:, None, :] >= org[None]) & (cells[:, None, :] <= org[None] + patch)).all(-1)
        inside = inside & st.patch_valid[b][None, :]
        keep = keep & inside.any(1)
        out.append({"labels": t["labels"][keep], "boxes": boxes[keep]})
    return out
