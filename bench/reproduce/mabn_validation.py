"""MABN recipe selection on source-range VALIDATION domains (never the held-out targets).

`random_source_domain` drawn with a seed no meta-training run uses gives domains whose shifts
lie within the source ranges; the methods of `edgedet.adapt.protocol` are scored on them, and
the jointly trained model also on the source domains' own test range (is it trained at all?).

    python -m edgedet.bench.reproduce.mabn_validation --epochs 6 --per-domain 300 --episodes 80
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from edgedet.adapt import test_time
from edgedet.adapt.config import MabnConfig
from edgedet.adapt.protocol import POOL_START, TEST_START, support_of
from edgedet.adapt.training import train_mabn
from edgedet.data.domains import SOURCE_DOMAINS, DomainShapes, random_source_domain

VALIDATION_SEED = 991  # no meta-training run draws its episode domains with this seed


def validation_sets(n_domains: int, test_images: int, size: int = 32) -> dict[str, tuple]:
    """{name: (pool (64,3,H,W), test x, test y)} of `n_domains` random source-range domains."""
    rng = np.random.default_rng([VALIDATION_SEED, 7])
    out = {}
    for i in range(n_domains):
        dom = random_source_domain(SOURCE_DOMAINS[i % len(SOURCE_DOMAINS)], rng)
        pool = DomainShapes(dom, 64, size, start=POOL_START).tensors()[0]
        x, y = DomainShapes(dom, test_images, size, start=TEST_START).tensors()
        out[dom.name] = (pool, x, y)
    return out


def source_test_accuracy(net: torch.nn.Module, test_images: int, size: int = 32) -> float:
    """Mean accuracy (%) of `net` on the source domains' own test index range."""
    accs = [test_time.accuracy(net, *DomainShapes(d, test_images, size, start=TEST_START).tensors())
            for d in SOURCE_DOMAINS]
    return statistics.mean(accs)


def score(joint, meta, cfg: MabnConfig, sets: dict[str, tuple], n: int, seed: int = 0) -> dict[str, float]:
    """Mean validation accuracy (%) per method at n adaptation images; `mabn_bn` is MABN's step
    applied after the BN statistics were re-estimated on the same n images."""
    accs: dict[str, list[float]] = {}
    for pool, x, y in sets.values():
        s = support_of(pool, n, seed)
        mabn_bn = test_time.bn_stats(meta, s)
        res = {"source_only": test_time.accuracy(joint.net, x, y),
               "bn_stats": test_time.accuracy(test_time.bn_stats(joint.net, s), x, y),
               "tent": test_time.accuracy(test_time.tent(joint.net, s, 10, 1e-3), x, y),
               "meta_no_step": test_time.accuracy(meta.net, x, y),
               "mabn": test_time.accuracy(test_time.mabn(meta, s, cfg.inner_steps, cfg.inner_lr, seed, cfg.stats),
                                           x, y),
               "mabn_bn": test_time.accuracy(test_time.mabn(mabn_bn, s, cfg.inner_steps, cfg.inner_lr, seed),
                                             x, y)}
        for k, v in res.items():
            accs.setdefault(k, []).append(v)
    return {k: round(statistics.mean(v), 2) for k, v in accs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet-bn")
    ap.add_argument("--per-domain", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--episodes", type=int, default=80)
    ap.add_argument("--inner-lr", type=float, default=1.0)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--first-order", action="store_true")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--meta-stats", default="source", choices=["source", "support"])
    ap.add_argument("--aux", default="rotation")
    ap.add_argument("--val-domains", type=int, default=14)
    ap.add_argument("--test-images", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    cfg = replace(MabnConfig(), model=a.model, seed=a.seed, aux=a.aux, train_per_domain=a.per_domain,
                  epochs=a.epochs, episodes=a.episodes, inner_lr=a.inner_lr, inner_steps=a.inner_steps,
                  second_order=not a.first_order, lr=a.lr,
                  batch_size=a.batch_size, stats=a.meta_stats)
    joint, meta = train_mabn(cfg, list(SOURCE_DOMAINS))
    t_train = time.perf_counter() - t0
    sets = validation_sets(a.val_domains, a.test_images)
    result = {"args": vars(a), "train_s": round(t_train, 1),
              "source_test_acc": round(source_test_accuracy(joint.net, a.test_images), 2),
              "val_32": score(joint, meta, cfg, sets, 32, a.seed)}
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
