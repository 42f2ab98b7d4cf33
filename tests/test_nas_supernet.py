"""Supernet maths: the gate-gradient estimator, α rescaling, the LUT expectation and its
gradient, the loss forms, and budget fitting."""

import math
import random

import pytest
import torch
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.nas.budget import check_budget, choose_skeleton, fit_to_budget
from edgedet.nas.lut import LatencyTable, build_lut
from edgedet.nas.search import SearchConfig, latency_loss
from edgedet.nas.space import SKELETONS, SearchSpace, sample_arch, skeleton
from edgedet.nas.supernet import (
    Alphas,
    MixedLayer,
    Supernet,
    gate_gradient,
    rescale_pair,
    sample_pairs,
    sample_paths,
)

torch.set_num_threads(1)


def _layer():
    torch.manual_seed(0)
    ops = [nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 3, padding=1), nn.Identity()]
    return MixedLayer(ops), torch.randn(2, 3, 5, 5)


def _gated_loss(layer, x, pair, gates, loss_fn):
    layer.pair, layer.gates = pair, gates
    return loss_fn(layer(x))


@pytest.mark.parametrize("pair", [(0, 1), (1, 0), (0, 2), (2, 1)])
@pytest.mark.parametrize("active", [0, 1])
def test_gate_estimator_exact_for_linear_loss(pair, active):
    """For a loss linear in y, the estimator equals ∇α of the exact expectation over the pair."""
    layer, x = _layer()
    c = torch.randn(2, 3, 5, 5)

    def loss(y):
        return (c * y).sum()

    alpha = torch.randn(3, dtype=torch.float64).float()
    g = torch.zeros(2)
    g[active] = 1
    g.requires_grad_(True)
    (gg,) = torch.autograd.grad(_gated_loss(layer, x, pair, g, loss), g)
    est = gate_gradient(alpha[list(pair)], gg)

    a = alpha[list(pair)].clone().requires_grad_(True)
    outs = [loss(layer.candidates[j](x)).detach() for j in pair]
    expectation = (torch.softmax(a, 0) * torch.stack(outs)).sum()
    (exact,) = torch.autograd.grad(expectation, a)
    assert torch.allclose(est, exact, rtol=1e-4, atol=1e-5)


def test_gate_estimator_matches_finite_differences():
    """Nonlinear loss: the estimator is the chain rule with ∂g_j/∂α_i := ∂p_j/∂α_i; check it
    against central differences of L(x + Σ_j (g_j + p_j(α) − p_j(α0))·(o_j − x))."""
    layer, x = _layer()
    layer, x = layer.double(), x.double()
    torch.manual_seed(1)
    t = torch.randn(2, 3, 5, 5, dtype=torch.float64)

    def loss(y):
        return ((torch.tanh(y) - t) ** 2).sum()

    pair = (0, 1)
    alpha0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    g0 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    g = g0.clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(_gated_loss(layer, x, pair, g, loss), g)
    est = gate_gradient(alpha0, gg)

    def f(a):
        shift = torch.softmax(a, 0) - torch.softmax(alpha0, 0)
        with torch.no_grad():
            return float(_gated_loss(layer, x, pair, g0 + shift, loss))

    eps = 1e-3
    fd = torch.tensor([(f(alpha0 + eps * e) - f(alpha0 - eps * e)) / (2 * eps)
                       for e in torch.eye(2).double()],
                      dtype=torch.float64)
    assert torch.allclose(est, fd, rtol=1e-4, atol=1e-6), (est, fd)


def test_identity_gets_no_gate_gradient_and_constant_shift_cancels():
    layer, x = _layer()
    g = torch.tensor([1.0, 0.0], requires_grad=True)
    y = _gated_loss(layer, x, (0, 2), g, lambda y: (y ** 2).sum())
    gg = torch.autograd.grad(y, g, allow_unused=True)[0]
    assert gg[1] == 0  # identity contributes nothing through the op output
    a = torch.tensor([0.4, -0.1])
    shifted = gate_gradient(a, gg + 3.7)
    assert torch.allclose(gate_gradient(a, gg), shifted, atol=1e-5)
    assert abs(float(gate_gradient(a, gg).sum())) < 1e-5


def test_rescale_keeps_pair_logsumexp_and_other_probs():
    alpha = torch.tensor([0.1, -0.3, 0.5, 0.2])
    pair = (1, 3)
    old = alpha[list(pair)].clone()
    p_before = torch.softmax(alpha, 0)
    alpha[1] += 0.7
    alpha[3] -= 0.2  # an optimiser step on the pair
    rescale_pair(alpha, pair, old)
    assert torch.allclose(torch.logsumexp(alpha[list(pair)], 0), torch.logsumexp(old, 0), atol=1e-6)
    p_after = torch.softmax(alpha, 0)
    assert torch.allclose(p_after[[0, 2]], p_before[[0, 2]], atol=1e-6)
    assert p_after[1] > p_before[1] and p_after[3] < p_before[3]


def test_sampling_is_seeded_and_pairs_distinct():
    al = Alphas([6, 7, 7], torch.Generator().manual_seed(0))
    a = sample_pairs(al, torch.Generator().manual_seed(5))
    b = sample_pairs(al, torch.Generator().manual_seed(5))
    assert a == b
    for (i, j), act in zip(*a, strict=True):
        assert i != j and act in (0, 1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert sample_paths(al, g1) == sample_paths(al, g2)
    assert all(abs(float(v)) < 0.01 for p in al for v in p.detach())  # N(0, 1e-3) init


def _lut():
    return LatencyTable(fixed_ms=2.0, table=[[3.0, 5.0, 0.0], [1.0, 4.0, 9.0, 0.0]])


def test_lut_expectation_and_gradient():
    lut = _lut()
    alphas = [torch.tensor([0.2, -0.5, 0.1], requires_grad=True), torch.tensor([0.0, 0.3, -0.2, 0.4],
                                                                              requires_grad=True)]
    e = lut.expected(alphas)
    probs = [torch.softmax(a.detach(), 0) for a in alphas]
    e_layers = [float((p * torch.tensor(r)).sum()) for p, r in zip(probs, lut.table, strict=True)]
    assert math.isclose(float(e.detach()), 2.0 + sum(e_layers), rel_tol=1e-6)
    grads = torch.autograd.grad(e, alphas)
    for g, p, r, el in zip(grads, probs, lut.table, e_layers, strict=True):
        assert torch.allclose(g, p * (torch.tensor(r) - el), atol=1e-6)
    # finite differences through the same function
    eps = 1e-3
    base = [a.detach().double() for a in alphas]
    d = torch.zeros(3, dtype=torch.float64)
    d[1] = eps
    up = float(lut.expected([base[0] + d, base[1]]))
    dn = float(lut.expected([base[0] - d, base[1]]))
    assert math.isclose((up - dn) / (2 * eps), float(grads[0][1]), rel_tol=1e-3)
    assert lut.latency([1, 2]) == 2 + 5 + 9 and lut.min_ms == 2.0 and lut.max_ms == 16.0


@pytest.mark.parametrize("form", ["mul", "add"])
def test_latency_term_stays_in_graph(form):
    lut = _lut()
    a = [torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)]
    ce = torch.tensor(2.0)
    cfg = SearchConfig(budget_ms=8.0, loss=form)
    loss = latency_loss(ce, lut.expected(a), cfg)
    g = torch.autograd.grad(loss, a)
    # pushing probability to the dearest op raises the loss, to the free identity lowers it
    assert g[1][2] > 0 and g[1][3] < 0
    if form == "add":
        p = torch.softmax(a[1].detach(), 0)
        e1 = float((p * torch.tensor(lut.table[1])).sum())
        assert torch.allclose(g[1], cfg.add_lambda / 8.0 * p * (torch.tensor(lut.table[1]) - e1))


def _flops_cost(module, shape):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as c:
        module(torch.zeros(shape))
    return c.get_total_flops() / 1e9 * 10 + 0.01  # an explicit 100 GFLOP/s + 10 µs cost model


def test_build_lut_prices_layers_at_deployment_size():
    sp = SearchSpace(input_size=224, num_classes=10)
    lut = build_lut(sp, _flops_cost)
    assert len(lut.table) == sum(sp.max_layers)
    # identity is free
    assert all(row[-1] == 0.0 for row, (_, i) in zip(lut.table, sp.layers(), strict=True) if i > 0)
    assert lut.table[0][0] < lut.table[0][-1]  # k3e2 < k7e4
    small = build_lut(SearchSpace(input_size=112, num_classes=10), _flops_cost)
    assert lut.max_ms > 3 * small.max_ms  # priced at the deployment size, not a fixed one
    # sum of the LUT = cost of the assembled network (the cost model is additive)
    from edgedet.models.quadranet import build_from_arch

    r = random.Random(0)
    idx = [r.randrange(len(row)) for row in lut.table]
    whole = _flops_cost(build_from_arch(sp.arch_from_indices(idx)).eval(), (1, 3, 224, 224))
    n_blocks = sum(1 for row, i in zip(lut.table, idx, strict=True) if row[i] > 0)
    assert math.isclose(lut.latency(idx), whole + 0.01 * n_blocks, rel_tol=1e-6)


def test_budget_errors_and_skeleton_choice():
    sp = SearchSpace(input_size=112, num_classes=10)
    lut = build_lut(sp, _flops_cost)
    with pytest.raises(EdgedetError, match=f"{lut.min_ms:.3g} ms"):
        check_budget(lut, lut.min_ms * 0.5, sp.name, "test")
    with pytest.raises(EdgedetError, match="above the largest"):
        check_budget(lut, lut.max_ms * 1.5, sp.name, "test")
    names = ["c16-d16", "c24-d16", "c32-d25"]

    def make(s):
        return build_lut(s, _flops_cost)

    def choose(budget):
        return choose_skeleton(budget, make, "test", input_size=112, num_classes=10, names=names)

    big = make(skeleton("c32-d25", input_size=112, num_classes=10))
    ch = choose(big.max_ms * 0.95)
    assert ch.space.name == "c32-d25" and ch.lut.min_ms <= big.max_ms * 0.95 <= ch.lut.max_ms
    assert set(ch.ranges) == set(names)
    ch = choose(lut.max_ms * 0.9)
    assert ch.lut.min_ms <= lut.max_ms * 0.9 <= ch.lut.max_ms
    with pytest.raises(EdgedetError, match="unattainable.*smallest"):
        choose(lut.min_ms * 0.5)
    with pytest.raises(EdgedetError, match="above the largest architecture of every skeleton"):
        choose(big.max_ms * 2)


@pytest.mark.parametrize("seed", range(5))
def test_fit_to_budget_lands_in_window(seed):
    r = random.Random(seed)
    table = [[r.uniform(0.5, 5) for _ in range(6)] + ([0.0] if i else []) for i in range(12)]
    lut = LatencyTable(1.0, table)
    logp = [[math.log(1 / len(row))] * len(row) for row in table]
    logp = [[v + r.gauss(0, 0.3) for v in row] for row in logp]
    budget = r.uniform(lut.min_ms * 1.5, lut.max_ms * 0.8)
    for start in (lut.max_indices(), lut.min_indices()):
        fit = fit_to_budget(start, logp, lut, budget)
        assert 0.85 * budget <= fit.latency_ms <= budget
        assert math.isclose(fit.latency_ms, lut.latency(fit.indices))


def test_space_sampler_and_skeletons():
    sp = skeleton("c32-d25", num_classes=10)
    assert sp.widths == (32, 64, 128, 256) and sum(sp.max_layers) == 25
    a = sample_arch(sp, 3)
    assert a.to_json() == sample_arch(sp, 3).to_json()
    assert all(st.layers[0] is not None for st in a.stages)
    assert skeleton("c16-d16", block="mbconv").expansions == (3, 6)
    assert "c16-d16" in SKELETONS
    with pytest.raises(EdgedetError):
        skeleton("c16-d99")
    net = Supernet(SearchSpace(num_classes=10), 10)
    net.use_paths([0] * 16)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_block_cost_cache_persists(tmp_path, monkeypatch):
    from edgedet.arch import LayerChoice
    from edgedet.nas.lut import BlockCostCache

    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path))
    calls = []

    class Cost:
        cache_key = "test-profile-0"

        def __call__(self, module, shape):
            calls.append(shape)
            return 1.5

    a = BlockCostCache(Cost())
    assert a.block("quadra", LayerChoice(3, 2), 16, 56) == 1.5 and len(calls) == 1
    assert a.block("quadra", LayerChoice(3, 2), 16, 56) == 1.5 and len(calls) == 1  # memo
    a.save()
    b = BlockCostCache(Cost())
    assert b.block("quadra", LayerChoice(3, 2), 16, 56) == 1.5 and len(calls) == 1  # from disk
    monkeypatch.setenv("EDGEDET_CACHE", "off")
    assert BlockCostCache(Cost()).store is None
