"""Hungarian matching between predictions and targets (DETR), solved with scipy.

Cost per (query, target) pair = w_class·C_focal + w_bbox·L1(cxcywh) − w_giou·GIoU, where
C_focal is the focal-loss difference between predicting the target class and not (as in
Deformable DETR, since classification uses sigmoid focal loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from edgedet.ops.boxes import box_cxcywh_to_xyxy, generalized_box_iou

Match = tuple[Tensor, Tensor]  # (query indices, target indices), both int64, equal length


@dataclass
class HungarianMatcher:
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def cost_matrix(self, logits: Tensor, boxes: Tensor, labels: Tensor, tgt_boxes: Tensor) -> Tensor:
        """(Q,K) logits, (Q,4) cxcywh boxes vs T targets → (Q,T) cost."""
        p = logits.sigmoid()[:, labels]
        a, g = self.focal_alpha, self.focal_gamma
        neg = (1 - a) * p.pow(g) * -(1 - p + 1e-8).log()
        pos = a * (1 - p).pow(g) * -(p + 1e-8).log()
        c_cls = pos - neg
        c_l1 = torch.cdist(boxes, tgt_boxes, p=1)
        c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        return self.cost_class * c_cls + self.cost_bbox * c_l1 + self.cost_giou * c_giou

    @torch.no_grad()
    def __call__(self, pred_logits: Tensor, pred_boxes: Tensor, targets: list[dict]) -> list[Match]:
        """One match per image; `targets[b]` has "labels" (T,) and "boxes" (T,4) cxcywh."""
        out = []
        for b, t in enumerate(targets):
            labels, tboxes = t["labels"], t["boxes"]
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                out.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(pred_logits[b].float(), pred_boxes[b].float(), labels, tboxes.float())
            cost = torch.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)
            qi, ti = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(qi, dtype=torch.int64), torch.as_tensor(ti, dtype=torch.int64)))
        return out


def repeat_targets(targets: list[dict], k: int) -> list[dict]:
    """Each target repeated k times: the one-to-many (hybrid) branch matches against these."""
    out = []
    for t in targets:
        r = dict(t)
        r["labels"] = t["labels"].repeat(k)
        r["boxes"] = t["boxes"].repeat(k, 1)
        out.append(r)
    return out
