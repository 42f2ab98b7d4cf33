"""`edgedet reproduce mabn`: test-time domain adaptation on the synthetic domains. Target-
domain accuracy (mean over the held-out target domains) of source-only, BN-statistics
re-estimation, TENT and MABN with 12 and 32 unlabelled adaptation images, over 5 seeds
(mean ± std), for a BatchNorm net (resnet-bn) and a LayerNorm net (a small QuadraNet).

Each seed trains both nets afresh (stage 1 joint, stage 2 meta-auxiliary) on the source
domains; the target domains are never seen in training, and nothing here is tuned on them.

Every (net, seed) is an independent unit; `jobs` worker processes (spawned) run them with
`threads` torch threads each. On two cores, two one-thread workers beat one two-thread
process by far: at batch 32 these nets' ops are too small to share, and OpenMP threads that
spin at every barrier while the other core is busy made a joint step 5-8x slower
(docs/adapt.md, "Time"). Results do not depend on `jobs` (each unit seeds its own RNGs).
"""

from __future__ import annotations

import functools
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from edgedet.adapt.checkpoint import save_mabn
from edgedet.adapt.config import MabnConfig
from edgedet.adapt.protocol import POOL_SIZE, evaluate, target_sets
from edgedet.adapt.training import train_mabn
from edgedet.arch import uniform_arch
from edgedet.data.domains import SOURCE_DOMAINS, TARGET_DOMAINS
from edgedet.io.atomic import atomic_output

SCHEMA_VERSION = 1
SIZES = [12, 32]
TEST_IMAGES, TEST_IMAGES_QUICK = 500, 300  # labelled test images per target domain
QUADRANET_MINI = {"widths": [16, 32, 64, 128], "depths": [1, 1, 3, 1]}


def nets(out: Path) -> list[tuple[str, str]]:
    """(model name, norm) of the BN and the LN net; the QuadraNet arch is written to `out`."""

    arch_path = out / "quadranet-mini.arch.json"
    uniform_arch(QUADRANET_MINI["widths"], QUADRANET_MINI["depths"], input_size=32, num_classes=10).save(arch_path)
    return [("resnet-bn", "BN"), (f"quadranet-arch:{arch_path}", "LN")]


def recipe(model: str, seed: int, quick: bool, aux: str, inner_lr: float, stats: str):
    """The training recipe of one (net, seed); --quick trains on fewer images, shorter.
    Batch 32: at 128 the 6 epochs are 96 steps and leave the net undertrained (docs/adapt.md)."""

    cfg = MabnConfig(model=model, seed=seed, aux=aux, inner_lr=inner_lr, stats=stats, train_per_domain=300,
                     epochs=6, batch_size=32, episodes=80)
    if quick:
        cfg = replace(cfg, train_per_domain=250, epochs=4, episodes=50, meta_domains=14)
    return cfg


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean over targets per (net, method, images, seed), then mean ± std over seeds."""
    keys = sorted({(r["net"], r["norm"], r["method"], r["images"]) for r in rows})
    out = []
    for net, norm, method, n in keys:
        sel = [r for r in rows if (r["net"], r["norm"], r["method"], r["images"]) == (net, norm, method, n)]
        seeds = sorted({r["seed"] for r in sel})
        per_seed = [statistics.mean(r["acc"] for r in sel if r["seed"] == s) for s in seeds]
        targets = sorted({r["target"] for r in sel})
        out.append({"net": net, "norm": norm, "method": method, "images": n,
                    "acc_mean": statistics.mean(per_seed),
                    "acc_std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
                    "seeds": seeds, "acc_per_seed": per_seed,
                    "acc_per_target": {t: statistics.mean(r["acc"] for r in sel if r["target"] == t)
                                       for t in targets}})
    return out


def summary(table: list[dict], norm: str = "BN", images: int = 32) -> dict:
    return {r["method"]: r["acc_mean"] for r in table if r["norm"] == norm and r["images"] == images}


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = sorted({r["norm"] for r in table})
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=True):
        for method, colour in zip(("source_only", "bn_stats", "tent", "mabn"), ("C0", "C1", "C2", "C3"),
                                  strict=True):
            pts = sorted((r["images"], r["acc_mean"], r["acc_std"]) for r in table
                         if r["norm"] == norm and r["method"] == method)
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            marker="o", capsize=3, label=method, color=colour)
        net = next(r["net"] for r in table if r["norm"] == norm)
        ax.set(xlabel="unlabelled adaptation images", ylabel="target accuracy (%)",
               title=f"{norm} net ({net.split('/')[-1]})", xticks=SIZES)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Test-time domain adaptation, mean over held-out synthetic target domains")
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def print_table(table: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Target-domain accuracy (%), mean ± std over seeds, mean over held-out domains")
    for c in ("net", "method", *[f"{n} images" for n in SIZES]):
        t.add_column(c, justify="left" if c in ("net", "method") else "right")
    for norm in sorted({r["norm"] for r in table}):
        for method in ("source_only", "bn_stats", "tent", "mabn"):
            cells = {r["images"]: f"{r['acc_mean']:.1f} ± {r['acc_std']:.1f}" for r in table
                     if r["norm"] == norm and r["method"] == method}
            if cells:
                t.add_row(f"{norm}", method, *(cells.get(n, "–") for n in SIZES))
    Console().print(t)


@functools.lru_cache(maxsize=2)
def _targets(test_images: int) -> dict[str, tuple]:
    """The held-out target sets, generated once per process."""
    return target_sets(list(TARGET_DOMAINS), 32, test_images)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_unit(model: str, norm: str, seed: int, cfg: MabnConfig, test_images: int, out: Path,
             save: bool) -> tuple[list[dict], float]:
    """Train one net for one seed with recipe `cfg` (joint, then meta), score every method on
    every target domain (`test_images` each) and size: (rows {net, norm, seed, target, images,
    method, acc}, seconds). With `save`, the MABN checkpoint goes to `out` (for `edgedet adapt`)."""
    t0 = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{norm} seed {seed}] {line}", flush=True)

    log(f"training {model}")
    joint, meta = train_mabn(cfg, list(SOURCE_DOMAINS), log=log)
    if save:
        save_mabn(out / f"{'resnet-bn' if norm == 'BN' else 'quadranet-mini'}-mabn.pt", meta, cfg,
                  list(SOURCE_DOMAINS))
    rows = [{"net": model, "norm": norm, "seed": seed, **r}
            for r in evaluate(joint, meta, cfg, _targets(test_images), SIZES, seed, log=log)]
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return rows, time.perf_counter() - t0


def run(seeds: list[int], quick: bool, out: Path, threads: int, aux: str, inner_lr: float,
        stats: str, jobs: int = 1, overrides: dict | None = None, test_images: int | None = None) -> dict:
    """Every (net, seed) unit, in `jobs` spawned processes of `threads` torch threads each (1: in
    this process). `overrides` replace recipe fields and `test_images` the test images per target
    (default 500, `quick` 300); both for tests."""
    t0 = time.perf_counter()
    n_test = test_images or (TEST_IMAGES_QUICK if quick else TEST_IMAGES)
    units = [(model, norm, seed, replace(recipe(model, seed, quick, aux, inner_lr, stats), **(overrides or {})),
              n_test, out, seed == seeds[0]) for model, norm in nets(out) for seed in seeds]
    if jobs == 1:
        _init_worker(threads)
        results = [run_unit(*u) for u in units]
    else:
        with ProcessPoolExecutor(min(jobs, len(units)), mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(run_unit, *u) for u in units]
            try:
                results = [f.result() for f in futures]
            except BaseException:  # a failed unit (or Ctrl-C): do not start the queued ones
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    rows = [r for unit_rows, _ in results for r in unit_rows]
    table = aggregate(rows)
    return {"schema_version": SCHEMA_VERSION, "suite": "mabn", "quick": quick, "seeds": seeds,
            "recipe": {"BN": units[0][3].to_dict()}, "threads": threads, "jobs": jobs,
            "test_images_per_target": n_test, "adaptation_pool": POOL_SIZE,
            "source_domains": list(SOURCE_DOMAINS), "target_domains": list(TARGET_DOMAINS),
            "rows": table, "summary": summary(table), "per_target_rows": rows,
            "unit_time_s": [{"norm": u[1], "seed": u[2], "seconds": round(t, 1)}
                            for u, (_, t) in zip(units, results, strict=True)],
            "wall_time_s": time.perf_counter() - t0}
