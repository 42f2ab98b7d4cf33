"""The test-time domain adaptation protocol on the synthetic domains: for every held-out
target domain, adapt once with N unlabelled target images, then classify that domain's test
images (a disjoint index range). Methods: source-only, bn_stats, tent, mabn."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from edgedet.adapt import test_time
from edgedet.adapt.aux_heads import AuxNet
from edgedet.adapt.config import MabnConfig
from edgedet.adapt.norm_affine import has_batchnorm
from edgedet.data.domains import DomainShapes

POOL_START = 100_000  # unlabelled adaptation pool of every target domain
TEST_START = 200_000  # labelled test images of every target domain
POOL_SIZE = 64
METHODS = ("source_only", "bn_stats", "tent", "mabn")


def target_sets(names: list[str], size: int, test_images: int, data_seed: int = 0) -> dict[str, tuple]:
    """{domain: (pool (P,3,H,W), test x, test y)}; generated once, shared by every run."""
    out = {}
    for n in names:
        pool = DomainShapes(n, POOL_SIZE, size, start=POOL_START, seed=data_seed).tensors()[0]
        x, y = DomainShapes(n, test_images, size, start=TEST_START, seed=data_seed).tensors()
        out[n] = (pool, x, y)
    return out


def support_of(pool: Tensor, n: int, seed: int) -> Tensor:
    """n images of the pool, a seeded choice (the same for every method)."""
    g = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=g)[:n]]


def evaluate(joint: AuxNet, meta: AuxNet, cfg: MabnConfig, targets: dict[str, tuple], sizes: list[int],
             seed: int, tent_steps: int = 10, tent_lr: float = 1e-3,
             log: Callable[[str], None] = print) -> list[dict]:
    """Rows {target, images, method, acc}; baselines adapt the stage-1 (joint) model, MABN the
    meta-trained one with its own inner step; bn_stats only for nets with BatchNorm."""
    rows = []
    bn = has_batchnorm(joint.net)
    for name, (pool, x, y) in targets.items():
        src = test_time.accuracy(joint.net, x, y)
        for n in sizes:
            s = support_of(pool, n, seed)
            accs = {"source_only": src,
                    "tent": test_time.accuracy(test_time.tent(joint.net, s, tent_steps, tent_lr), x, y),
                    "mabn": test_time.accuracy(test_time.mabn(meta, s, cfg.inner_steps, cfg.inner_lr, seed,
                                                                  cfg.stats), x, y)}
            if bn:
                accs["bn_stats"] = test_time.accuracy(test_time.bn_stats(joint.net, s), x, y)
            rows += [{"target": name, "images": n, "method": m, "acc": accs[m]} for m in METHODS if m in accs]
            log(f"    {name}, {n} images: " + ", ".join(f"{m} {accs[m]:.1f}" for m in METHODS if m in accs))
    return rows
