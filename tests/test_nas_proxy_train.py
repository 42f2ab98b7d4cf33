"""Proxy training (`nas.proxy`): the init it starts from and a recipe that does learn."""

import torch

from edgedet.data import make_classification_data
from edgedet.nas.driver import build_space_net
from edgedet.nas.proxy import ProxyTrainConfig, fan_in_init, set_layer_scale, train_proxy
from edgedet.nas.space import SearchSpace

torch.set_num_threads(1)
SPACE = SearchSpace(widths=(8, 16), max_layers=(1, 1), num_classes=10)


def _net():
    torch.manual_seed(0)
    return build_space_net(SPACE, SPACE.arch_from_indices([5, 5]), 10)


def test_fan_in_init_and_layer_scale():
    net = _net()
    assert float(net.head.weight.detach().std()) < 0.03  # the skeleton's trunc-normal 0.02
    fan_in_init(net)
    assert float(net.head.weight.detach().std()) > 0.1  # ≈ 1/√(3·16)
    set_layer_scale(net, 0.7)
    gammas = [p for n, p in net.named_parameters() if n.endswith(("gamma1", "gamma2"))]
    assert gammas and all(bool((g == 0.7).all()) for g in gammas)


def test_recipe_memorises_a_small_set():
    """Train = val (64 images, 120 steps): the recipe fits them."""
    data = make_classification_data("synthetic", 32, seed=0, train_size=64, val_size=16)
    acc = train_proxy(_net(), data.train, data.train, ProxyTrainConfig(epochs=60, warmup_steps=5))
    assert acc > 0.9, acc
