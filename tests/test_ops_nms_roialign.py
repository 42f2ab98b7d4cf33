"""NMS and RoIAlign against straightforward loop implementations of their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from edgedet.ops.nms import batched_nms, fixed_size_nms, nms
from edgedet.ops.roi_align import multiscale_roi_align, roi_align, roi_align_batched, roi_levels


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_nms(boxes, scores, thr) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= thr for j in kept):
            kept.append(i)
    return kept


def _random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.25, 0.5, 0.7])
def test_nms_matches_loop_reference(seed: int, thr: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    boxes = _random_boxes(60, gen)
    scores = torch.rand(60, generator=gen)
    scores[::7] = scores[3]  # ties: lower index wins
    got = nms(boxes, scores, thr).tolist()
    assert got == ref_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_empty_and_identical_boxes() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert nms(boxes, torch.tensor([0.2, 0.9, 0.5]), 0.5).tolist() == [1]


def test_batched_nms_is_per_group() -> None:
    gen = torch.Generator().manual_seed(1)
    boxes = _random_boxes(50, gen)
    scores = torch.rand(50, generator=gen)
    groups = torch.randint(0, 3, (50,), generator=gen)
    got = batched_nms(boxes, scores, groups, 0.3)
    expect = []
    for g in range(3):
        idx = torch.nonzero(groups == g).flatten().tolist()
        expect += [idx[k] for k in ref_nms(boxes[idx].tolist(), scores[idx].tolist(), 0.3)]
    expect.sort(key=lambda i: (-scores[i].item(), i))
    assert got.tolist() == expect


def test_fixed_size_nms_equals_dynamic_prefix() -> None:
    gen = torch.Generator().manual_seed(2)
    boxes = torch.stack([_random_boxes(40, gen) for _ in range(3)])
    scores = torch.rand(3, 40, generator=gen)
    valid = torch.rand(3, 40, generator=gen) > 0.3
    idx, kept = fixed_size_nms(boxes, scores, valid, 0.4, max_output=12)
    assert idx.shape == kept.shape == (3, 12)
    for b in range(3):
        v = torch.nonzero(valid[b]).flatten()
        expect = v[nms(boxes[b, v], scores[b, v], 0.4)][:12].tolist()
        assert idx[b, kept[b]].tolist() == expect
        assert kept[b].tolist() == [True] * len(expect) + [False] * (12 - len(expect))


def _bilinear(img, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate, literally: one sample of a (C,H,W) map."""
    h, w = img.shape[-2:]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(img.shape[0], dtype=torch.float64)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * img[:, y0, x0]
        + hy * lx * img[:, y0, x1]
        + ly * hx * img[:, y1, x0]
        + ly * lx * img[:, y1, x1]
    )


def ref_roi_align(feat, rois, out_hw, scale, sr, aligned):
    ph, pw = out_hw
    out = torch.zeros(len(rois), feat.shape[1], ph, pw, dtype=torch.float64)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        img = feat[int(b)].double()
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sr if sr > 0 else math.ceil(rh / ph)
        gw = sr if sr > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for py in range(ph):
            for px in range(pw):
                acc = torch.zeros(feat.shape[1], dtype=torch.float64)
                for iy in range(gh):
                    y = sy + py * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sx + px * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear(img, y, x)
                out[k, :, py, px] = acc / count
    return out


@pytest.mark.parametrize("method", ["grid", "separable"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sr", [2, 1, -1])
def test_roi_align_matches_loop_reference(aligned: bool, sr: int, method: str) -> None:
    gen = torch.Generator().manual_seed(3 + sr)
    feat = torch.randn(2, 3, 9, 11, generator=gen)
    boxes = _random_boxes(7, gen, size=40.0)
    boxes[0] = torch.tensor([-6.0, -5.0, 3.0, 50.0])  # beyond the borders
    boxes[1] = torch.tensor([10.0, 10.0, 10.2, 10.1])  # tiny
    rois = torch.cat([torch.tensor([0, 1, 1, 0, 1, 0, 1.0])[:, None], boxes], 1)
    got = roi_align(feat, rois, (3, 2), 0.25, sr, aligned, method)
    expect = ref_roi_align(feat, rois, (3, 2), 0.25, sr, aligned)
    torch.testing.assert_close(got.double(), expect, atol=1e-5, rtol=1e-5)


def test_roi_align_batched_layout_and_grad() -> None:
    gen = torch.Generator().manual_seed(4)
    feat = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
    boxes = torch.stack([_random_boxes(5, gen, 30.0) for _ in range(2)])
    out = roi_align_batched(feat, boxes, 7, 0.25, 2, False)
    assert out.shape == (2, 5, 4, 7, 7)
    rois = torch.cat([torch.arange(2).repeat_interleave(5)[:, None].float(), boxes.reshape(-1, 4)], 1)
    torch.testing.assert_close(out.reshape(10, 4, 7, 7), roi_align(feat, rois, 7, 0.25, 2, False))
    out.sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0


@pytest.mark.parametrize("sr", [2, -1])
def test_roi_align_grid_and_separable_agree_with_gradients(sr: int) -> None:
    """The two computations are the same arithmetic: values and both gradients agree in fp64."""
    gen = torch.Generator().manual_seed(8)
    feat = torch.randn(2, 5, 10, 13, generator=gen, dtype=torch.float64, requires_grad=True)
    boxes = torch.stack([_random_boxes(9, gen, 90.0) for _ in range(2)]).double() - 10
    boxes.requires_grad_()
    weights = torch.randn(2, 9, 5, 7, 5, generator=gen, dtype=torch.float64)
    results = []
    for method in ("grid", "separable"):
        out = roi_align_batched(feat, boxes, (7, 5), 1 / 8, sr, False, method)
        results.append((out, *torch.autograd.grad((out * weights).sum(), [feat, boxes])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="method"):
        roi_align_batched(feat, boxes, 7, 1.0, 2, False, "fast")


def test_multiscale_roi_align_picks_fpn_level() -> None:
    gen = torch.Generator().manual_seed(5)
    strides = [8, 16, 32, 64]
    feats = [torch.randn(1, 2, 256 // s, 256 // s, generator=gen) for s in strides]
    boxes = torch.tensor([[[0.0, 0, 20, 20], [0, 0, 224, 224], [10, 10, 250, 250], [0, 0, 120, 100]]])
    levels = roi_levels(boxes, strides)
    assert levels.tolist() == [[0, 1, 1, 0]]
    out = multiscale_roi_align(feats, strides, boxes, 7, 2)
    for q, lvl in enumerate(levels[0].tolist()):
        one = roi_align_batched(feats[lvl], boxes[:, q : q + 1], 7, 1 / strides[lvl], 2, False)
        torch.testing.assert_close(out[:, q], one[:, 0])


def test_multiscale_roi_align_static_equals_per_level() -> None:
    gen = torch.Generator().manual_seed(6)
    strides = [8, 16, 32, 64]
    feats = [torch.randn(2, 3, 320 // s, 256 // s, generator=gen) for s in strides]
    boxes = torch.stack(
        [_random_boxes(9, gen, size=200.0) * torch.tensor([1.0, 1, 1.5, 1.5]) for _ in range(2)]
    )
    a = multiscale_roi_align(feats, strides, boxes, 7, 2, static=True)
    b = multiscale_roi_align(feats, strides, boxes, 7, 2, static=False)
    torch.testing.assert_close(a, b)


def test_stable_rank_matches_stable_sort() -> None:
    from edgedet.ops.nms import stable_argsort_desc, stable_rank_desc

    gen = torch.Generator().manual_seed(7)
    x = torch.randint(0, 5, (3, 40), generator=gen).float()  # many ties
    order = torch.sort(x, dim=1, descending=True, stable=True).indices
    assert torch.equal(stable_argsort_desc(x), order)
    assert torch.equal(stable_argsort_desc(x, 7), order[:, :7])
    assert torch.equal(stable_rank_desc(x).gather(1, order), torch.arange(40).expand(3, 40))
    # traced (as in export), the pairwise-comparison path runs instead of torch.sort
    traced = torch.jit.trace(lambda v: stable_argsort_desc(v, 7), (x * 0 + 1,))
    assert "aten::sort" not in str(traced.graph)  # ONNX export has no stable sort
    assert torch.equal(traced(x), order[:, :7])


def test_fixed_size_nms_traced_equals_eager() -> None:
    """Eager NMS skips candidates that are not alive in any image; traced runs every step."""
    from edgedet.ops.nms import fixed_size_nms

    gen = torch.Generator().manual_seed(3)
    xy = torch.rand(2, 60, 2, generator=gen) * 20  # crowded: many suppressions
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 60, 2, generator=gen) * 20], -1)
    scores = torch.rand(2, 60, generator=gen)
    valid = torch.rand(2, 60, generator=gen) < 0.4
    other = torch.zeros_like(valid)  # traced on another mask: no step may be baked out
    other[:, :2] = True
    traced = torch.jit.trace(lambda b, s, v: fixed_size_nms(b, s, v, 0.5, 30), (boxes, scores, other))
    eager = fixed_size_nms(boxes, scores, valid, 0.5, 30)
    again = traced(boxes, scores, valid)
    assert torch.equal(eager[1], again[1])
    assert torch.equal(eager[0][eager[1]], again[0][again[1]])
