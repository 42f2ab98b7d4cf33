"""Fitting a search into a wall-clock time box: time a few proxy steps of the supernet on
this machine, then give the warm-up and the α phase the epochs the rest of the box holds.

The box covers the whole job (LUT, data, search, derivation): a default search must finish
in 15 minutes on two shared AVX2 cores, and a faster machine simply gets more epochs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from edgedet.errors import EdgedetError
from edgedet.nas.supernet import Alphas, Supernet, sample_pairs, sample_paths

# Share of the box kept free for the derivation, the outputs and timing noise.
RESERVE = 0.08


@dataclass
class TimePlan:
    box_s: float  # the whole job's wall-clock box
    spent_s: float  # already used when the plan was made (LUT, data)
    step_s: float  # measured seconds per one-path weight step
    arch_step_s: float  # measured seconds per two-path α step
    eval_s: float  # estimated seconds of one validation pass
    steps_per_epoch: int
    arch_every: int
    epochs: int
    warmup_epochs: int
    estimate_s: float  # spent + the planned epochs

    def to_json(self) -> dict:
        return asdict(self)


def epoch_seconds(plan_like: dict, warm: bool) -> float:
    """Predicted wall seconds of one epoch from measured step costs."""
    s = plan_like["steps_per_epoch"] * plan_like["step_s"] + plan_like["eval_s"]
    if not warm:
        s += plan_like["steps_per_epoch"] // plan_like["arch_every"] * plan_like["arch_step_s"]
    return s


def plan_epochs(box_s: float, spent_s: float, step_s: float, arch_step_s: float, eval_s: float,
                steps_per_epoch: int, arch_every: int, warmup_share: float,
                min_epochs: int = 2, max_epochs: int = 60) -> TimePlan:
    """Most epochs (warm-up = warmup_share of them, at least one epoch in each phase)
    whose predicted wall time fits box_s·(1 − RESERVE) − spent_s. Pure."""
    if not 0 < warmup_share < 1:
        raise EdgedetError(f"warm-up share must be in (0, 1), got {warmup_share}")
    base = {"steps_per_epoch": steps_per_epoch, "step_s": step_s, "arch_step_s": arch_step_s,
            "eval_s": eval_s, "arch_every": arch_every}
    warm_s, search_s = epoch_seconds(base, True), epoch_seconds(base, False)
    left = box_s * (1 - RESERVE) - spent_s
    best = (min_epochs, warmup_split(min_epochs, warmup_share))
    for total in range(min_epochs, max_epochs + 1):
        w = warmup_split(total, warmup_share)
        if w * warm_s + (total - w) * search_s <= left:
            best = (total, w)
    total, w = best
    est = spent_s + w * warm_s + (total - w) * search_s
    return TimePlan(box_s, spent_s, step_s, arch_step_s, eval_s, steps_per_epoch, arch_every, total, w, est)


def replan(plan: dict, elapsed_s: float, done: int, last_wall_s: float, last_warm: bool) -> dict:
    """The plan after `done` epochs, shrunk (never grown) so the rest fits the box at the
    pace of the last epoch: a loaded machine ends the warm-up or the search early, keeping
    at least one search epoch. Pure; returns a new plan dict."""
    p = dict(plan)
    ratio = max(last_wall_s, 1e-9) / max(epoch_seconds(plan, last_warm), 1e-9)
    warm_s, search_s = epoch_seconds(plan, True) * ratio, epoch_seconds(plan, False) * ratio
    left = p["box_s"] * (1 - RESERVE) - elapsed_s
    w, e = p["warmup_epochs"], p["epochs"]

    def rest(w: int, e: int) -> float:
        return max(0, w - done) * warm_s + (e - max(w, done)) * search_s

    while rest(w, e) > left:
        if w > done and w - done >= e - w:
            w, e = w - 1, e - 1  # cut a warm-up epoch
        elif e > max(w, done) + 1:
            e -= 1  # cut a search epoch
        else:
            break
    p["warmup_epochs"], p["epochs"] = w, e
    p["estimate_s"] = elapsed_s + rest(w, e)
    return p


def warmup_split(epochs: int, share: float) -> int:
    """Warm-up epochs of a plan of `epochs`: share of them, at least one, leaving one."""
    return max(1, min(epochs - 1, round(share * epochs)))


def measure_steps(supernet: Supernet, alphas: Alphas, x: Tensor, y: Tensor, repeats: int = 3) -> tuple[float, float]:
    """Median wall seconds of a one-path weight step and of a two-path α step (forward +
    backward; no optimiser step, gradients discarded, a private generator: the search's
    state is untouched)."""
    gen = torch.Generator().manual_seed(12345)
    one, two = [], []
    for _ in range(repeats + 1):  # the first of each is a warm-up
        supernet.use_paths(sample_paths(alphas, gen, uniform=True))
        t = time.perf_counter()
        F.cross_entropy(supernet(x), y).backward()
        one.append(time.perf_counter() - t)
        pairs, active = sample_pairs(alphas, gen)
        gates = supernet.use_pairs(pairs, active, device=x.device)
        t = time.perf_counter()
        ce = F.cross_entropy(supernet(x), y)
        torch.autograd.grad(ce, gates, allow_unused=True)
        two.append(time.perf_counter() - t)
    for m in supernet.mixed_layers():
        m.pair, m.gates = None, None
    supernet.zero_grad(set_to_none=True)
    return _median(one[1:]), _median(two[1:])


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])


def format_estimate(plan: TimePlan) -> str:
    return (f"time box {plan.box_s / 60:.0f} min: measured {plan.step_s:.2f} s per weight step, "
            f"{plan.arch_step_s:.2f} s per α step → {plan.warmup_epochs} warm-up + "
            f"{plan.epochs - plan.warmup_epochs} search epochs of {plan.steps_per_epoch} steps; "
            f"estimate {math.ceil(plan.estimate_s / 60)} min wall ({plan.spent_s:.0f} s already spent on "
            f"LUT and data)")
