"""`--strategy zero-cost`: regularised evolution (Real et al. 2019) over the same space and
LUT, every candidate kept inside the latency band [low·B, B] and scored by a training-free
proxy (`nas.zerocost`) on a fixed batch of proxy images.

Population of random in-band architectures; each cycle samples a tournament, mutates one
layer of its best member (re-drawn until the child is in band), adds the child and drops
the oldest member. Stops after `cycles` or when `time_limit_s` is spent; the answer is the
best-scored architecture ever seen.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgedet.errors import EdgedetError
from edgedet.nas.lut import LatencyTable


@dataclass
class EvolutionConfig:
    budget_ms: float
    proxy: str = "naswot"
    population: int = 24
    tournament: int = 6
    cycles: int = 400
    time_limit_s: float = 150.0  # the strategy must finish in ≤ 3 minutes with the LUT
    low: float = 0.85
    seed: int = 0


@dataclass
class EvolutionResult:
    indices: list[int]
    score: float
    evaluated: int
    wall_s: float
    history: list[dict] = field(default_factory=list)  # one record per evaluation


def in_band(lut: LatencyTable, idx: list[int], budget: float, low: float) -> bool:
    return low * budget <= lut.latency(idx) <= budget


def sample_in_band(lut: LatencyTable, budget: float, n: int, rng: random.Random, low: float = 0.85,
                   tries: int = 200_000) -> list[list[int]]:
    """n distinct uniform-random architectures (each layer uniform) with latency in [low·B, B]."""
    out: list[list[int]] = []
    for _ in range(tries):
        idx = [rng.randrange(len(row)) for row in lut.table]
        if in_band(lut, idx, budget, low) and idx not in out:
            out.append(idx)
            if len(out) == n:
                return out
    raise EdgedetError(f"only {len(out)} of {n} random architectures fell in [{low:.2f}·{budget:g}, "
                       f"{budget:g}] ms after {tries} draws")


def mutate(idx: list[int], lut: LatencyTable, budget: float, low: float, rng: random.Random,
           tries: int = 200) -> list[int]:
    """One layer changed to another choice, re-drawn until the child is in band (else the parent)."""
    for _ in range(tries):
        child = list(idx)
        layer = rng.randrange(len(child))
        options = [c for c in range(len(lut.table[layer])) if c != child[layer]]
        child[layer] = rng.choice(options)
        if in_band(lut, child, budget, low):
            return child
    return list(idx)


def regularized_evolution(lut: LatencyTable, score: Callable[[list[int]], float],
                          cfg: EvolutionConfig) -> EvolutionResult:
    """Aging evolution under the latency band; `score` is higher-is-better."""
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    history: list[dict] = []

    def evaluate(idx: list[int]) -> tuple[list[int], float]:
        s = score(idx)
        history.append({"indices": idx, "score": s, "latency_ms": lut.latency(idx),
                        "t_s": time.perf_counter() - t0})
        return idx, s

    pop: deque[tuple[list[int], float]] = deque()
    for idx in sample_in_band(lut, cfg.budget_ms, cfg.population, rng, cfg.low):
        pop.append(evaluate(idx))
        if time.perf_counter() - t0 > cfg.time_limit_s:
            break
    for _ in range(cfg.cycles):
        if time.perf_counter() - t0 > cfg.time_limit_s:
            break
        parent = max(rng.sample(list(pop), min(cfg.tournament, len(pop))), key=lambda m: m[1])
        pop.append(evaluate(mutate(parent[0], lut, cfg.budget_ms, cfg.low, rng)))
        pop.popleft()
    best = max(history, key=lambda h: h["score"])
    return EvolutionResult(best["indices"], best["score"], len(history), time.perf_counter() - t0, history)
