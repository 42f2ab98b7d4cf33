"""BatchNorm statistics re-estimation, written once in edgedet.adapt.bn_statistics."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgedet.adapt import bn_statistics, test_time


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1),
                         nn.BatchNorm2d(5, momentum=0.3)).eval()


@torch.no_grad()
def _reference(net: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-BN (mean, unbiased var) of its input over (N,H,W), computed in float64."""
    out, h = [], x.double()
    for m in copy.deepcopy(net).double():
        if isinstance(m, nn.BatchNorm2d):
            out.append((h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)))
            h = (h - out[-1][0][None, :, None, None]) / (h.var((0, 2, 3), unbiased=False)[None, :, None, None]
                                                          + m.eps).sqrt() * m.weight[None, :, None, None] \
                + m.bias[None, :, None, None]
        else:
            h = m(h)
    return out


def test_reestimate_gives_the_batch_statistics_and_restores_mode_and_momentum():
    net = _net()
    with torch.no_grad():
        for m in bn_statistics.batchnorms(net):
            m.running_mean.fill_(5.0)  # stale source statistics must not leak in
            m.running_var.fill_(9.0)
    x = torch.randn(6, 3, 9, 9) * 2 + 1
    ref = _reference(net, x)
    bn_statistics.reestimate(net, x)
    bns = bn_statistics.batchnorms(net)
    assert len(bns) == 2
    for m, (mean, var) in zip(bns, ref, strict=True):
        scale = float(var.abs().max())
        torch.testing.assert_close(m.running_mean.double(), mean, atol=1e-5 * scale, rtol=1e-5)
        torch.testing.assert_close(m.running_var.double(), var, atol=1e-5 * scale, rtol=1e-5)
        assert not m.training
    assert [m.momentum for m in bns] == [0.1, 0.3]


def test_bn_stats_copies_and_support_statistics_restores():
    net, x = _net(), torch.randn(4, 3, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted = test_time.bn_stats(net, x)
    for k, v in net.state_dict().items():  # input untouched
        assert torch.equal(v, before[k])
    with bn_statistics.support_statistics(net, x, on=True):
        for k, v in net.state_dict().items():  # inside: exactly the statistics bn_stats gives
            assert torch.equal(v, adapted.state_dict()[k]), k
    for k, v in net.state_dict().items():  # after: the source ones again
        assert torch.equal(v, before[k])
    assert any(not torch.equal(v, before[k]) for k, v in adapted.state_dict().items())


def test_frozen_keeps_running_statistics_in_training_mode():
    net = _net().train()
    before = [m.running_mean.clone() for m in bn_statistics.batchnorms(net)]
    with bn_statistics.frozen(net):
        net(torch.randn(4, 3, 8, 8) + 3)
    for m, b in zip(bn_statistics.batchnorms(net), before, strict=True):
        assert torch.equal(m.running_mean, b)
    net(torch.randn(4, 3, 8, 8) + 3)  # outside the block they move again
    assert not torch.equal(bn_statistics.batchnorms(net)[0].running_mean, before[0])
