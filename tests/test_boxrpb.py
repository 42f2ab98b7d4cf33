"""BoxRPB cross-attention: axial decomposition == naive 4-D bias, official semantics and names."""

import math

import pytest
import torch

from edgedet.models.boxrpb import (
    BoxRPBCrossAttention,
    boxrpb_cost,
    naive_boxrpb_attention,
    naive_boxrpb_bias,
)


def _inputs(b=2, q=7, h=5, w=6, c=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(b, q, c, generator=g)
    boxes = torch.cat([torch.rand(b, q, 2, generator=g) * 0.8 + 0.1,
                       torch.rand(b, q, 2, generator=g) * 0.5 + 0.05], -1)
    mk, mv = torch.randn(b, h * w, c, generator=g), torch.randn(b, h * w, c, generator=g)
    return query, boxes, mk, mv


@pytest.mark.parametrize("rpe_type", ["linear", "abs_log8"])
def test_decomposed_equals_naive(rpe_type):
    torch.manual_seed(0)
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16, rpe_type=rpe_type, feature_stride=16)
    query, boxes, mk, mv = _inputs()
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[1, -8:] = True
    bx, by = attn.axial_bias(boxes, 5, 6)
    full = (by[..., :, None] + bx[..., None, :]).reshape(2, 4, 7, 30)
    assert torch.allclose(full, naive_boxrpb_bias(attn, boxes, 5, 6), atol=1e-5)
    out = attn(query, boxes, mk, mv, (5, 6), mask)
    ref = naive_boxrpb_attention(attn, query, boxes, mk, mv, (5, 6), mask)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out.shape == query.shape


def test_bias_follows_the_official_formula():
    """Recompute Bx for one query and one column from the paper/official definition."""
    torch.manual_seed(1)
    attn = BoxRPBCrossAttention(16, 2, rpe_hidden_dim=8, rpe_type="abs_log8", feature_stride=16)
    boxes = torch.tensor([[[0.5, 0.25, 0.2, 0.3]]])
    h, w = 4, 8
    bx, by = attn.axial_bias(boxes, h, w)
    x1, x2 = (0.5 - 0.1) * w * 16, (0.5 + 0.1) * w * 16
    j = 3
    px = (j + 0.5) * 16
    d = torch.tensor([x1 - px, x2 - px])
    d = torch.sign(d) * torch.log2(d.abs() + 1) / math.log2(8)
    want = attn.rpb_x(d)
    assert torch.allclose(bx[0, :, 0, j], want, atol=1e-5)
    y1 = (0.25 - 0.15) * h * 16
    i = 2
    dy = torch.tensor([y1 - (i + 0.5) * 16, (0.25 + 0.15) * h * 16 - (i + 0.5) * 16])
    dy = torch.sign(dy) * torch.log2(dy.abs() + 1) / math.log2(8)
    assert torch.allclose(by[0, :, 0, i], attn.rpb_y(dy), atol=1e-5)


def test_padding_mask_suppresses_padded_pixels():
    torch.manual_seed(0)
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16)
    query, boxes, mk, mv = _inputs(b=1)
    mask = torch.zeros(1, 30, dtype=torch.bool)
    mask[0, 20:] = True
    out = attn(query, boxes, mk, mv, (5, 6), mask)
    mv2 = mv.clone()
    mv2[0, 20:] += 1e3  # padded values barely matter once their logits drop by 100
    out2 = attn(query, boxes, mk, mv2, (5, 6), mask)
    assert torch.allclose(out, out2, atol=1e-2)
    assert not torch.allclose(out, attn(query, boxes, mk, mv2, (5, 6)), atol=1.0)


def test_gradients_reach_the_rpb_mlps():
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16)
    query, boxes, mk, mv = _inputs()
    attn(query, boxes, mk, mv, (5, 6)).sum().backward()
    assert attn.rpb_x[0].weight.grad.abs().sum() > 0 and attn.rpb_y[2].weight.grad.abs().sum() > 0


def test_load_official_state_dict_names():
    src = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16)
    official = {}
    for k, v in src.state_dict().items():
        k = k.replace("rpb_x", "cpb_mlp1").replace("rpb_y", "cpb_mlp2")
        official[k] = v.clone()
    assert "cpb_mlp1.0.weight" in official and "cpb_mlp2.2.weight" in official and "q.bias" in official
    dst = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16)
    dst.load_official_state_dict(official)
    query, boxes, mk, mv = _inputs()
    assert torch.equal(dst(query, boxes, mk, mv, (5, 6)), src(query, boxes, mk, mv, (5, 6)))
    with pytest.raises(RuntimeError):
        dst.load_official_state_dict({k: v for k, v in official.items() if "cpb_mlp2" not in k})


def test_traces_without_data_dependent_control_flow():
    attn = BoxRPBCrossAttention(32, 4, rpe_hidden_dim=16).eval()
    query, boxes, mk, mv = _inputs()
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, a, b_, c, d):
            return self.attn(a, b_, c, d, (5, 6))

    with torch.no_grad():
        traced = torch.jit.trace(Fixed(), (query, boxes, mk, mv))
    q2, b2, k2, v2 = _inputs(seed=3)
    with torch.no_grad():
        assert torch.allclose(traced(q2, b2, k2, v2), attn(q2, b2, k2, v2, (5, 6)), atol=1e-6)


def test_analytic_cost_at_paper_setting():
    c = boxrpb_cost(300, 8, 50, 84, hidden=512)
    assert c["ratio"]["flops"] > 30 and c["ratio"]["memory"] > 30
    # the decomposed MLPs touch Q·(H+W) points, the naive ones Q·H·W
    assert c["decomposed"]["flops"] < c["naive"]["flops"] / 30
