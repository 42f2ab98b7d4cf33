"""Zero-cost proxies and the regularised evolution of `--strategy zero-cost`."""

import math
import random

import pytest
import torch

from edgedet.data import make_classification_data
from edgedet.nas.driver import build_space_net
from edgedet.nas.evolution import EvolutionConfig, in_band, mutate, regularized_evolution, sample_in_band
from edgedet.nas.lut import LatencyTable
from edgedet.nas.space import SearchSpace
from edgedet.nas.zerocost import PROXIES, score

torch.set_num_threads(1)


def _lut(layers: int = 12, seed: int = 0) -> LatencyTable:
    r = random.Random(seed)
    return LatencyTable(fixed_ms=2.0, table=[sorted(r.uniform(1, 9) for _ in range(6)) + ([0.0] if i else [])
                                             for i in range(layers)])


def test_evolution_stays_in_band_and_climbs():
    lut = _lut()
    budget = lut.min_ms + 0.5 * (lut.max_ms - lut.min_ms)

    def fitness(idx):  # prefers high choice indices: a known optimum direction
        return float(sum(idx))

    res = regularized_evolution(lut, fitness, EvolutionConfig(budget_ms=budget, cycles=150, population=12))
    assert res.evaluated == 12 + 150
    assert all(in_band(lut, h["indices"], budget, 0.85) for h in res.history)
    initial_best = max(h["score"] for h in res.history[:12])
    assert res.score > initial_best and in_band(lut, res.indices, budget, 0.85)


def test_sampling_and_mutation_in_band():
    lut = _lut(seed=1)
    budget = lut.min_ms + 0.5 * (lut.max_ms - lut.min_ms)
    rng = random.Random(0)
    archs = sample_in_band(lut, budget, 10, rng)
    assert len({tuple(a) for a in archs}) == 10
    for a in archs:
        child = mutate(a, lut, budget, 0.85, rng)
        assert in_band(lut, child, budget, 0.85) and sum(x != y for x, y in zip(a, child, strict=True)) <= 1


@pytest.mark.parametrize("name", PROXIES)
def test_proxies_are_finite_deterministic_and_discriminate(name):
    sp = SearchSpace(widths=(8, 16, 32, 64), max_layers=(1, 1, 2, 1), num_classes=10)
    data = make_classification_data("synthetic", 32, seed=0, train_size=32, val_size=8)
    xs = torch.stack([data.train[i][0] for i in range(32)])
    ys = torch.tensor([data.train[i][1] for i in range(32)])
    batches = [(xs[:16], ys[:16]), (xs[16:], ys[16:])]

    def s(idx):
        torch.manual_seed(0)
        return score(name, build_space_net(sp, sp.arch_from_indices(idx), 10), batches)

    small, big = [0, 0, 0, 6, 0], [5, 5, 5, 5, 5]
    a, b = s(small), s(big)
    assert math.isfinite(a) and math.isfinite(b) and a != b
    assert s(small) == a
