"""One search end to end, as the CLI and `reproduce nas` run it: load the device profile,
price the LUT at the deployment size, pick the skeleton (or check the given one against
the budget), search on the proxy data, and write arch.json, search.json and the plots."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

from edgedet.arch import Arch
from edgedet.data import make_classification_data
from edgedet.data.synthetic import SyntheticSpec
from edgedet.distributed import dist_setup
from edgedet.errors import EdgedetError
from edgedet.models.quadranet import build_from_arch
from edgedet.models.skeleton import MacroNet
from edgedet.nas.budget import check_budget, choose_skeleton, fit_to_budget, proxy_images
from edgedet.nas.evolution import EvolutionConfig, regularized_evolution
from edgedet.nas.lut import BlockCostCache, LatencyTable, ModuleCost, build_lut, profile_cost, profile_source
from edgedet.nas.outputs import result_arch, write_outputs
from edgedet.nas.search import Reporter, SearchConfig, SearchResult, _jsonable, proxy_space, run_search
from edgedet.nas.space import SearchSpace, build_block, skeleton
from edgedet.nas.supernet_eval import proxy_batch
from edgedet.nas.zerocost import PROXIES, score
from edgedet.profiles import load_profile

ZERO_COST_LIMIT_S = 170.0  # the zero-cost strategy finishes in ≤ 3 minutes, LUT included


@dataclass
class SearchJob:
    device: str  # profile id or path
    budget_ms: float
    out_dir: str
    data: str = "synthetic"
    train_size: int = 32  # proxy image size
    input_size: int = 224  # deployment image size (the LUT's)
    skeleton: str = "auto"
    block: str = "quadra"
    synthetic_images: int = 0  # 0: chosen from the skeleton's training cost (budget.proxy_images)
    resume: bool = False
    plots: bool = True
    nonbinding_ok: bool = False  # accept a budget above the skeleton's largest arch (comparisons only)
    strategy: str = "supernet"  # or "zero-cost" (nas.evolution)
    zero_cost_proxy: str = "naswot"
    config: SearchConfig | None = None  # None: SearchConfig's defaults at budget_ms

    def __post_init__(self) -> None:
        """The search config is built once, here, and carries the job's budget."""
        if self.config is None:
            self.config = SearchConfig(budget_ms=self.budget_ms)
        elif self.config.budget_ms != self.budget_ms:
            raise EdgedetError(f"the job's budget {self.budget_ms:g} ms and its search config's "
                               f"{self.config.budget_ms:g} ms differ")


@dataclass
class JobResult:
    arch: Arch
    result: SearchResult
    space: SearchSpace
    lut: LatencyTable
    ranges: dict[str, list[float]]


def load_device(device: str) -> tuple[Any, ModuleCost, dict[str, Any]]:
    """Profile, its block-cost function, and what arch.json records about it."""
    profile = load_profile(device)
    return profile, profile_cost(profile), profile_source(profile)


def plan(job: SearchJob, num_classes: int, cost: ModuleCost | BlockCostCache, device_name: str,
         source: dict[str, Any]) -> tuple[SearchSpace, LatencyTable, dict[str, list[float]]]:
    """The skeleton and its LUT for the job's budget; fails fast on budgets that cannot bind."""
    cache = cost if isinstance(cost, BlockCostCache) else BlockCostCache(cost)

    def make_lut(sp: SearchSpace) -> LatencyTable:
        return build_lut(sp, cache, source)

    if job.skeleton == "auto":
        ch = choose_skeleton(job.budget_ms, make_lut, device_name, job.block, job.input_size, num_classes)
        return ch.space, ch.lut, ch.ranges
    sp = skeleton(job.skeleton, job.block, job.input_size, num_classes)
    lut = make_lut(sp)
    if not (job.nonbinding_ok and job.budget_ms > lut.max_ms):
        check_budget(lut, job.budget_ms, sp.name, device_name)
    return sp, lut, {sp.name: [lut.min_ms, lut.max_ms]}


def run_job(job: SearchJob, reporter: Reporter | None = None,
            on_plan: Callable[[SearchSpace, LatencyTable], None] | None = None) -> JobResult:
    started = time.perf_counter()  # the time box covers the LUT and the data too
    rank, world = dist_setup()
    cfg = job.config
    cfg.validate()
    profile, cost, source = load_device(job.device)
    dev_name = source.get("id") or str(job.device)
    if job.synthetic_images < 0:
        raise EdgedetError(f"synthetic image count must be ≥ 0 (0: automatic), got {job.synthetic_images}")
    data = None
    if job.data == "synthetic":  # drawn after the skeleton is known: its cost sets the image count
        num_classes = SyntheticSpec().num_classes
    else:
        data = make_classification_data(job.data, job.train_size, seed=cfg.seed)
        num_classes = data.num_classes
    cache = BlockCostCache(cost)
    if world > 1:  # rank 0 prices the LUT, the others receive it
        box: list[Any] = [None]
        if rank == 0:
            try:
                box[0] = plan(job, num_classes, cache, dev_name, source)
            except EdgedetError as e:
                box[0] = e
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], EdgedetError):
            raise box[0]
        space, lut, ranges = box[0]
    else:
        space, lut, ranges = plan(job, num_classes, cache, dev_name, source)
    if data is None:
        images = job.synthetic_images or proxy_images(space, cfg.proxy_width)
        data = make_classification_data("synthetic", job.train_size, seed=cfg.seed, train_size=images,
                                        val_size=max(200, images // 5))
        for ds in (data.train, data.val):  # render (and cache) now, so the time plan sees epochs as they run
            for i in range(len(ds)):
                ds[i]
    if on_plan is not None and rank == 0:
        on_plan(space, lut)
    if job.strategy == "zero-cost":
        if world > 1:
            raise EdgedetError("--strategy zero-cost runs in one process; launch it without torchrun")
        result = run_zero_cost(space, lut, data, cfg, job, started)
        arch = fit_whole_network(space, result, lut, cost, dev_name, job, source)
        write_outputs(job.out_dir, space, result, lut, arch,
                      extra={"skeleton_ranges_ms": ranges, "data": data.source, "world_size": 1,
                             "proxy_images": len(data.train), "strategy": "zero-cost"}, plots=False)
        return JobResult(arch, result, space, lut, ranges)
    result = run_search(space, lut, data.train, data.val, data.num_classes, cfg, job.out_dir,
                        resume=job.resume, reporter=reporter if rank == 0 else None,
                        fingerprint={"device": dev_name, "data": data.source, "train_size": job.train_size,
                                     "images": len(data.train)}, started=started)
    if rank != 0:  # only rank 0 prices the whole network and writes
        dist.barrier()
        return JobResult(result_arch(space, result, lut, dev_name, job.budget_ms, source, job.train_size),
                         result, space, lut, ranges)
    arch = fit_whole_network(space, result, lut, cost, dev_name, job, source)
    if rank == 0:
        write_outputs(job.out_dir, space, result, lut, arch,
                      extra={"skeleton_ranges_ms": ranges, "data": data.source, "world_size": world,
                             "proxy_images": len(data.train)},
                      plots=job.plots)
    if world > 1:
        dist.barrier()
    return JobResult(arch, result, space, lut, ranges)


def run_zero_cost(space: SearchSpace, lut: LatencyTable, data, cfg: SearchConfig, job: SearchJob,
                  started: float) -> SearchResult:
    """Regularised evolution in the latency band, scored by a zero-cost proxy on two fixed
    batches of proxy images; the net is built at the proxy width, like the supernet."""
    if job.zero_cost_proxy not in PROXIES:
        raise EdgedetError(f"unknown zero-cost proxy {job.zero_cost_proxy!r}; choose from {', '.join(PROXIES)}")
    train_space = proxy_space(space, cfg.proxy_width)
    n = min(len(data.train), 2 * cfg.batch_size)
    idx = torch.arange(n)
    batches = [proxy_batch(data.train, idx[i::2], torch.device("cpu")) for i in range(2)]

    def score_arch(indices: list[int]) -> float:
        torch.manual_seed(cfg.seed)
        net = build_space_net(train_space, train_space.arch_from_indices(indices), data.num_classes)
        return score(job.zero_cost_proxy, net, batches)

    ecfg = EvolutionConfig(budget_ms=job.budget_ms, proxy=job.zero_cost_proxy, seed=cfg.seed,
                           low=cfg.fit_low, time_limit_s=max(5.0, min(ZERO_COST_LIMIT_S, 0.92 * cfg.time_box_s)
                                                        - (time.perf_counter() - started)))
    ev = regularized_evolution(lut, score_arch, ecfg)
    one_hot = [[1.0 if c == i else 0.0 for c in range(len(row))] for row, i in zip(lut.table, ev.indices,
                                                                                    strict=True)]
    config = _jsonable(asdict(cfg)) | {"strategy": "zero-cost", "evolution": asdict(ecfg),
                                       "evaluated": ev.evaluated, "evolution_wall_s": ev.wall_s,
                                       "best_score": ev.score}
    return SearchResult(indices=list(ev.indices), argmax_indices=list(ev.indices),
                        latency_ms=lut.latency(ev.indices), argmax_latency_ms=lut.latency(ev.indices),
                        repair=[], history=ev.history, probs=one_hot, config=config)


def fit_whole_network(space: SearchSpace, result: SearchResult, lut: LatencyTable, cost: ModuleCost,
                      dev_name: str, job: SearchJob, source: dict[str, Any]) -> Arch:
    """The arch whose *whole-network* prediction meets the budget. The LUT sum misses the
    small cross-block terms of the predictor (e.g. fusion at block borders, ~0.1%), so when
    the whole network comes out over budget the fit is redone against a budget shrunk by
    the observed ratio. arch.json's predicted_latency_ms is the whole-network prediction."""
    logp = [[math.log(max(p, 1e-30)) for p in row] for row in result.probs]
    target = job.budget_ms
    for _ in range(5):
        arch = result_arch(space, result, lut, dev_name, job.budget_ms, source, job.train_size)
        whole = whole_network_ms(arch, cost)
        arch.extra["search"]["lut_latency_ms"] = result.latency_ms
        arch.predicted_latency_ms = whole
        if whole <= job.budget_ms:
            return arch
        target *= job.budget_ms / whole * 0.999
        fit = fit_to_budget(result.argmax_indices, logp, lut, target, result.config["fit_low"])
        result.indices, result.latency_ms, result.repair = fit.indices, fit.latency_ms, fit.moves
    raise EdgedetError(f"could not fit the derived architecture under {job.budget_ms:g} ms as a whole "
                       f"network "
                       f"(last prediction {whole:.4g} ms)")


def whole_network_ms(arch: Arch, cost: ModuleCost) -> float | None:
    """The derived network priced as one model (checks that the LUT is additive)."""
    if arch.extra.get("skeleton", {}).get("block", "quadra") != "quadra":
        sk = arch.extra["skeleton"]
        sp = skeleton(sk["name"], sk["block"], arch.input_size, arch.num_classes)
        net = build_space_net(sp, arch)
    else:
        net = build_from_arch(arch)
    return float(cost(net.eval(), (1, 3, arch.input_size, arch.input_size)))


def build_space_net(space: SearchSpace, arch: Arch, num_classes: int | None = None):
    """The network of an arch in any block type of the search spaces."""
    stages = [[build_block(space.block, s.width, l) for l in s.layers] for s in arch.stages]
    return MacroNet([s.width for s in arch.stages], stages,
                    num_classes=num_classes if num_classes is not None else arch.num_classes)


