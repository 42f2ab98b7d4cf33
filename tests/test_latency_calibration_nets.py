"""The calibration and adaptation pools build only networks ONNX exports: wide-FC heads get a
pool that the exporter takes (an adaptive pool that does not divide the feature map does not
export), and an export failure is one line, without torch's TorchScript graph dump."""

from __future__ import annotations

import random

import onnx
import pytest
import torch
from torch import nn

from edgedet.nas.sampled_nets import random_space_net
from edgedet.profiles.adapt import ADAPT_SEED
from edgedet.profiles.calibration_nets import (
    CALIBRATION_SEED,
    NetExportError,
    WideHead,
    calibration_networks,
    fit_heads,
    plain_cnn,
    torch_onnx,
)

POOLS = ((CALIBRATION_SEED, 60), (ADAPT_SEED, 40))  # measured profiles' context pool; reproduce's adaptation pool


def _wide_head_seeds() -> list[tuple[int, int]]:
    """(seed, input size) of every plain CNN with a wide-FC head in the default pools (the same
    draws calibration_networks makes for seed + i, i % 4 ≥ 2)."""
    out = []
    for seed, n in POOLS:
        for i in range(n):
            if i % 4 < 2:
                continue
            r = random.Random(seed + i)
            net, _ = plain_cnn(r)
            size = r.choice([160, 192, 224])
            if any(isinstance(m, WideHead) for m in net.modules()):
                out.append((seed + i, size))
    return out


@pytest.mark.parametrize("feature,side", [(14, 4), (7, 6), (12, 6), (6, 6), (4, 6), (2, 6), (5, 4)])
def test_wide_head_keeps_its_output_and_exports(feature, side):
    head = WideHead(8, side, 32)
    head.fit(feature)
    x = torch.randn(1, 8, feature, feature)
    assert head(x).shape == (1, 1000)
    if feature >= side:  # still side×side into the FC
        assert head.fc[1].in_features == 8 * side * side
    if feature % side == 0:
        assert isinstance(head.pool, nn.AdaptiveAvgPool2d)
    model = onnx.load_from_string(torch_onnx(nn.Sequential(nn.Conv2d(3, 8, 1), nn.AdaptiveAvgPool2d(feature), head),
                                             size=feature * 3))
    onnx.checker.check_model(model)


def test_every_wide_fc_network_of_the_default_pools_exports():
    seeds = _wide_head_seeds()
    assert len(seeds) >= 15  # 8 of the 60 context networks and 12 of the 40 adaptation networks
    for seed, size in seeds:  # the exporter's condition, checked for all: an adaptive pool divides F
        r = random.Random(seed)
        net, _ = plain_cnn(r)
        assert r.choice([160, 192, 224]) == size
        head = next(m for m in net.modules() if isinstance(m, WideHead))
        seen = {}
        head.register_forward_pre_hook(lambda m, a, seen=seen: seen.update(f=a[0].shape[-1]))
        fit_heads(net, size)
        assert not isinstance(head.pool, nn.AdaptiveAvgPool2d) or seen["f"] % head.side == 0, seed
    # and exported for real: the three the context calibration of a quick profile used to skip
    done = []
    for name, _fam, make in calibration_networks(12, random_space_net):
        if name.endswith(("-s10003", "-s10006", "-s10011")):
            onnx.checker.check_model(onnx.load_from_string(make()))
            done.append(name)
    assert done == ["cnn-residual-224-s10003", "cnn-residual-224-s10006", "cnn-residual-160-s10011"]


@pytest.mark.slow
def test_every_network_of_the_default_pools_exports():
    for seed, n in POOLS:
        for name, _fam, make in calibration_networks(n, random_space_net, seed=seed):
            assert len(make()) > 1000, name


def test_an_export_failure_is_one_line(capfd):
    class Bad(nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 3)  # 8 is no multiple of 3: not exportable

    with pytest.raises(NetExportError) as e:
        torch_onnx(Bad(), size=8)
    assert "\n" not in str(e.value) and str(e.value).startswith("ONNX export failed:")
    out, _err = capfd.readouterr()
    assert "Torch IR graph" not in out and "graph(" not in out
