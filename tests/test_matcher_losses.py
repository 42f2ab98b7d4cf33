"""Box ops, Hungarian matcher and DETR set losses."""

import itertools
import math

import pytest
import torch

from edgedet.models.matcher import HungarianMatcher, repeat_targets
from edgedet.models.set_criterion import SetCriterion, sigmoid_focal_loss
from edgedet.ops.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_giou,
    generalized_box_iou,
    inverse_sigmoid,
)


def test_box_conversions_roundtrip():
    b = torch.rand(20, 4) * 0.5 + torch.tensor([0.25, 0.25, 0.0, 0.0])
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(b)), b, atol=1e-6)


def test_iou_and_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    assert torch.allclose(box_area(b), torch.tensor([4.0, 4.0, 4.0]))
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))
    # GIoU of the disjoint pair: 0 − (12 − 8) / 12
    assert torch.allclose(generalized_box_iou(a, b), torch.tensor([[1 / 7 - 2 / 9, 1.0, -1 / 3]]))
    assert torch.allclose(elementwise_giou(a.expand(3, 4), b), generalized_box_iou(a, b)[0])


def test_giou_degenerate_boxes_are_finite():
    a = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    g = generalized_box_iou(a, a)
    assert torch.isfinite(g).all()


def test_inverse_sigmoid():
    x = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(inverse_sigmoid(x).sigmoid(), x, atol=1e-5)
    assert torch.isfinite(inverse_sigmoid(torch.tensor([0.0, 1.0]))).all()


def test_matcher_is_optimal_against_brute_force():
    torch.manual_seed(0)
    m = HungarianMatcher()
    for _ in range(5):
        q, t, k = 5, 3, 4
        logits, boxes = torch.randn(1, q, k), torch.rand(1, q, 4) * 0.5 + 0.1
        tgt = {"labels": torch.randint(0, k, (t,)), "boxes": torch.rand(t, 4) * 0.5 + 0.1}
        (qi, ti), = m(logits, boxes, [tgt])
        cost = m.cost_matrix(logits[0], boxes[0], tgt["labels"], tgt["boxes"])
        got = cost[qi, ti].sum()
        best = min(sum(cost[p[j], j] for j in range(t)) for p in itertools.permutations(range(q), t))
        assert torch.isclose(got, best, atol=1e-5)
        assert sorted(ti.tolist()) == list(range(t))


def test_matcher_empty_targets():
    m = HungarianMatcher()
    (qi, ti), = m(torch.randn(1, 4, 2), torch.rand(1, 4, 4), [{"labels": torch.zeros(0, dtype=torch.int64),
                                                            "boxes": torch.zeros(0, 4)}])
    assert qi.numel() == 0 and ti.numel() == 0


def test_focal_loss_matches_formula():
    x, y = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    p = torch.sigmoid(x)
    want = -0.25 * (1 - p[0]) ** 2 * torch.log(p[0]) - 0.75 * p[1] ** 2 * torch.log(1 - p[1])
    assert torch.isclose(sigmoid_focal_loss(x, y), want, atol=1e-6)


def test_criterion_perfect_boxes_have_zero_box_loss_and_gradients_flow():
    tgt = [{"labels": torch.tensor([1, 0]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.1]])}]
    boxes = torch.tensor([[[0.7, 0.6, 0.3, 0.1], [0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2]]])
    logits = torch.full((1, 3, 2), -4.0)
    logits[0, 0, 0] = logits[0, 2, 1] = 4.0
    logits.requires_grad_(True)
    crit = SetCriterion(num_classes=2)
    out = crit({"pred_logits": logits, "pred_boxes": boxes}, tgt)
    assert out["loss_bbox"].item() < 1e-6 and out["loss_giou"].item() < 1e-6
    out["loss"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_criterion_aux_enc_and_one_to_many_terms():
    torch.manual_seed(0)
    tgt = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
           {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]

    def head(q):
        return {"pred_logits": torch.randn(2, q, 3), "pred_boxes": torch.rand(2, q, 4) * 0.5 + 0.2}

    outputs = {**head(5), "aux_outputs": [head(5), head(5)], "enc_outputs": head(5),
               "one2many": {**head(8), "aux_outputs": [head(8)]}}
    losses = SetCriterion(num_classes=3, one2many_k=3)(outputs, tgt)
    for name in ("loss_ce", "loss_bbox_1", "loss_giou_enc", "loss_ce_o2m", "loss_bbox_o2m_0", "loss"):
        assert name in losses and math.isfinite(losses[name].item())
    # one-to-many matched 3 copies of the single target
    assert len(repeat_targets(tgt, 3)[0]["labels"]) == 3


@pytest.mark.parametrize("k", [1, 4])
def test_repeat_targets(k):
    t = [{"labels": torch.tensor([2, 5]), "boxes": torch.rand(2, 4), "image_id": 7}]
    r = repeat_targets(t, k)[0]
    assert r["labels"].tolist() == [2, 5] * k and r["boxes"].shape == (2 * k, 4) and r["image_id"] == 7
