"""Budget handling: pick the skeleton on which a latency budget binds, refuse budgets no
skeleton can meet, and fit an argmax architecture into [low·budget, budget].

All pure functions over latency tables (`nas.lut.LatencyTable`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgedet.errors import EdgedetError
from edgedet.nas.lut import LatencyTable
from edgedet.nas.space import SKELETONS, SearchSpace, proxy_space, skeleton

# Where in a skeleton's latency range (log scale, 0 = smallest arch, 1 = largest) the
# budget may sit: low enough that it binds, high enough that the big ops stay reachable.
WINDOW = (0.5, 0.9)
TARGET_POSITION = 0.7


# Seconds per proxy weight step (64 px, batch 64, one thread) ≈ A·C0²·depth + B·depth: each
# stage doubles the width and halves the side, so FLOPs per layer ∝ C0²; B is the per-layer
# cost of the small ops. Fitted on steps timed on this project's 2-core CI machine
# (c16-d25 0.45 s, c64-d25 1.7 s); only ratios between skeletons are used. The reference is
# the heaviest skeleton the paper's budgets pick (cortex-a76 @ 300 ms), whose default search
# took 5 min 41 s on two cores with 2000 images (258.6 ms of 300).
STEP_COST_A, STEP_COST_B = 1.30e-5, 0.0147
REFERENCE_SKELETON = "c48-d36"
DEFAULT_PROXY_IMAGES = 2000
MIN_PROXY_IMAGES = 512


def training_cost(space: SearchSpace) -> float:
    """Relative cost of one proxy-training step of a supernet path."""
    depth = sum(space.max_layers)
    return STEP_COST_A * space.widths[0] ** 2 * depth + STEP_COST_B * depth


def proxy_images(space: SearchSpace, proxy_width: int = 16) -> int:
    """Synthetic proxy images for a search on `space`: the default 2000 on the reference
    skeleton (or lighter ones), proportionally fewer on heavier skeletons so that every
    default search costs about the same (never fewer than 512). The cost is that of the
    supernet actually trained, the skeleton at base width `proxy_width` (0: its own)."""
    ratio = (training_cost(proxy_space(skeleton(REFERENCE_SKELETON), proxy_width))
             / training_cost(proxy_space(space, proxy_width)))
    if ratio >= 1.0:
        return DEFAULT_PROXY_IMAGES
    return max(MIN_PROXY_IMAGES, int(round(DEFAULT_PROXY_IMAGES * ratio / 64.0)) * 64)


def range_position(lut: LatencyTable, budget_ms: float) -> float:
    lo, hi = lut.min_ms, lut.max_ms
    return (math.log(budget_ms) - math.log(lo)) / (math.log(hi) - math.log(lo))


def check_budget(lut: LatencyTable, budget_ms: float, name: str, device: str) -> None:
    """Fail fast when no architecture of this skeleton meets the budget, or all of them do."""
    if budget_ms < lut.min_ms:
        raise EdgedetError(
            f"budget {budget_ms:g} ms is unattainable on {device} with skeleton {name}: its smallest "
            f"architecture is predicted at {lut.min_ms:.3g} ms")
    if budget_ms > lut.max_ms:
        raise EdgedetError(
            f"budget {budget_ms:g} ms is above the largest architecture of skeleton {name} on {device} "
            f"({lut.max_ms:.3g} ms), so it would not bind; pick a wider or deeper skeleton "
            f"(--skeleton, one of {', '.join(SKELETONS)}) or leave --skeleton to choose automatically")


@dataclass
class SkeletonChoice:
    space: SearchSpace
    lut: LatencyTable
    ranges: dict[str, list[float]] = field(default_factory=dict)  # name -> [min_ms, max_ms]


def choose_skeleton(budget_ms: float, make_lut: Callable[[SearchSpace], LatencyTable], device: str,
                    block: str = "quadra", input_size: int = 224, num_classes: int = 1000,
                    names: Sequence[str] = tuple(SKELETONS)) -> SkeletonChoice:
    """The cheapest skeleton to train whose latency range holds the budget inside WINDOW
    (log-scale position); failing that, the one nearest TARGET_POSITION."""
    luts, ranges = {}, {}
    for n in names:
        sp = skeleton(n, block=block, input_size=input_size, num_classes=num_classes)
        luts[n] = (sp, make_lut(sp))
        ranges[n] = [luts[n][1].min_ms, luts[n][1].max_ms]
    fits = [n for n in names if ranges[n][0] <= budget_ms <= ranges[n][1]]
    if not fits:
        lo = min(names, key=lambda n: ranges[n][0])
        hi = max(names, key=lambda n: ranges[n][1])
        if budget_ms < ranges[lo][0]:
            raise EdgedetError(
                f"budget {budget_ms:g} ms is unattainable on {device}: the smallest architecture of any "
                f"skeleton ({lo}) is predicted at {ranges[lo][0]:.3g} ms")
        raise EdgedetError(
            f"budget {budget_ms:g} ms is above the largest architecture of every skeleton on {device} "
            f"(largest: {hi} at {ranges[hi][1]:.3g} ms), so it would not bind; lower the budget")
    pos = {n: range_position(luts[n][1], budget_ms) for n in fits}
    inside = [n for n in fits if WINDOW[0] <= pos[n] <= WINDOW[1]]
    if inside:
        best = min(inside, key=lambda n: (training_cost(luts[n][0]), abs(pos[n] - TARGET_POSITION), n))
    else:
        best = min(fits, key=lambda n: (abs(pos[n] - TARGET_POSITION), n))
    return SkeletonChoice(luts[best][0], luts[best][1], ranges)


@dataclass
class Fit:
    indices: list[int]
    latency_ms: float
    moves: list[dict]  # each repair move: layer, from, to, latency after


def fit_to_budget(indices: Sequence[int], logp: Sequence[Sequence[float]], lut: LatencyTable,
                  budget_ms: float, low: float = 0.85) -> Fit:
    """Repair an argmax architecture so that low·budget ≤ latency ≤ budget.

    Over budget: repeatedly take the downgrade (layer l: c → c' with lower latency) that
    loses the least log-probability per ms saved. Under low·budget: repeatedly take the
    upgrade that still fits and loses the least log-probability per ms added. Stops when
    inside the window or when no move helps (the window can be narrower than a step).
    """
    idx = list(indices)
    lat = lut.latency(idx)
    moves: list[dict] = []

    def move(l: int, c: int) -> None:
        nonlocal lat
        lat += lut.table[l][c] - lut.table[l][idx[l]]
        moves.append({"layer": l, "from": idx[l], "to": c, "latency_ms": lat})
        idx[l] = c

    while lat > budget_ms:
        cands = [((logp[l][idx[l]] - logp[l][c]) / (row[idx[l]] - row[c]), -(row[idx[l]] - row[c]), l, c)
                 for l, row in enumerate(lut.table) for c in range(len(row)) if row[c] < row[idx[l]]]
        if not cands:
            break
        _, _, l, c = min(cands)
        move(l, c)
    while lat < low * budget_ms:
        cands = [((logp[l][idx[l]] - logp[l][c]) / (row[c] - row[idx[l]]), l, c)
                 for l, row in enumerate(lut.table) for c in range(len(row))
                 if row[c] > row[idx[l]] and lat + row[c] - row[idx[l]] <= budget_ms]
        if not cands:
            break
        _, l, c = min(cands)
        move(l, c)
    return Fit(idx, lut.latency(idx), moves)
