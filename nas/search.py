"""The search loop: weight-only warm-up on random paths, then alternating one-path weight
steps and two-path α steps on separate splits of the training data, checkpointed each
epoch; then argmax derivation fitted to the budget.

Losses of the α step, with E = E[lat] from the LUT and T the budget:
    abs: CE + λ · |E / T* − 1|,  T* = target·T   (TuNAS; default, target 0.925 = the
         middle of the [0.85, 1.0]·T band the derived net must land in)
    mul: a · CE · (log E / log T)^β        (ProxylessNAS; a = 0.2, β = 0.3)
    add: CE + λ · (E − T) / T              (ProxylessNAS)
`mul` and `add` reward every millisecond saved, so on a short proxy (noisy CE gradient)
they drive α towards the cheapest ops; `abs` pulls E[lat] onto the target from both
sides. All keep E in the autograd graph, so α gets the latency gradient directly and the
CE gradient through the binary gates.

Multi-process (torchrun): weights are trained with DistributedDataParallel, each rank on
its shard of every batch; α gradients are all-reduced; every rank draws the same paths
from a generator seeded alike; only rank 0 writes files.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from edgedet.nas.budget import fit_to_budget
from edgedet.nas.lut import LatencyTable
from edgedet.nas.proxy import fan_in_init
from edgedet.nas.space import SearchSpace, proxy_space
from edgedet.nas.supernet import Alphas, Supernet, gate_gradient, rescale_pair, sample_pairs, sample_paths
from edgedet.nas.supernet_eval import evaluate, mean_over_ranks, proxy_batch, sampled_accuracy
from edgedet.nas.timebox import measure_steps, plan_epochs, replan

LOSSES = ("abs", "mul", "add")
CHECKPOINT_NAME = "search.ckpt"  # OUT/search.ckpt, rewritten atomically each epoch
SAMPLED_EVAL_PATHS = 3  # random sub-networks scored at the end of the warm-up


@dataclass
class SearchConfig:
    budget_ms: float
    epochs: int = 0  # 0: as many as the time box holds (nas.timebox), warm-up warmup_share of them
    warmup_epochs: int = 4  # used when epochs > 0
    time_box_s: float = 900.0  # the whole job's wall-clock box when epochs = 0
    warmup_share: float = 0.5
    # proxy training runs the skeleton's depths at base width proxy_width (0: the skeleton's
    # own); the LUT still prices the real widths at the deployment size
    proxy_width: int = 16
    # the proxy recipe (docs/nas.md, "Proxy recipe"): a layer's candidates share one block's
    # weights, PyTorch's fan-in init, layer scale 1; measured to learn in the box, unlike
    # separate candidates, the skeleton's 0.02 init or small layer scales
    share_weights: bool = True
    linear_init: str = "torch"  # "torch" (fan-in) or "skeleton" (trunc-normal 0.02)
    layer_scale: float = 1.0  # initial block layer scale of the supernet (0: the blocks' 1e-6)
    batch_size: int = 32
    lr: float = 0.05  # SGD-Nesterov, cosine; measured on the 32 px proxy (docs/nas.md)
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    # DESIGN's reference is 1e-3 for ~10⁵ α steps (ImageNet, 120 epochs); a proxy search
    # takes ~10³, so α would hardly move: the default is scaled up (pass 1e-3 for long runs)
    arch_lr: float = 3e-2
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_every: int = 2  # one α step every this many weight steps
    arch_split: float = 0.2  # share of the training set held out for α steps
    loss: str = "abs"
    abs_lambda: float = 1.0
    abs_target: float = 0.925  # E[lat] is pulled onto this share of the budget
    abs_straight_through: bool = True  # the abs term's value is the argmax net's latency
    mul_a: float = 0.2
    mul_beta: float = 0.3
    add_lambda: float = 1.0
    fit_low: float = 0.85  # the derived arch is fitted into [fit_low·budget, budget]
    seed: int = 0

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise EdgedetError(f"unknown loss form {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.epochs < 0 or (self.epochs > 0 and not 0 <= self.warmup_epochs < self.epochs):
            raise EdgedetError(f"need epochs ≥ 1 and 0 ≤ warm-up epochs < epochs, got {self.epochs}, "
                               f"{self.warmup_epochs} (epochs 0: chosen by the time box)")
        if self.epochs == 0 and self.time_box_s <= 0:
            raise EdgedetError(f"time box must be positive, got {self.time_box_s} s")
        if self.proxy_width < 0 or self.proxy_width % 8:
            raise EdgedetError(f"proxy width must be a multiple of 8 (0: the skeleton's), got {self.proxy_width}")
        if self.budget_ms <= 0:
            raise EdgedetError(f"budget must be positive, got {self.budget_ms} ms")
        if self.loss == "mul" and self.budget_ms <= 1.0:
            raise EdgedetError("the 'mul' loss uses log(T) and needs a budget above 1 ms; use --loss add")
        if self.linear_init not in ("torch", "skeleton"):
            raise EdgedetError(f"linear_init must be 'torch' or 'skeleton', got {self.linear_init!r}")
        if not 0 < self.arch_split < 1:
            raise EdgedetError(f"arch_split must be in (0, 1), got {self.arch_split}")


def latency_loss(ce: Tensor, expected_ms: Tensor, cfg: SearchConfig, argmax_ms: float | None = None) -> Tensor:
    """The α-step objective; E[lat] stays in the graph. With `argmax_ms` the abs term is
    straight-through: its value is the argmax net's latency, its gradient that of E[lat]."""
    t = cfg.budget_ms
    if cfg.loss == "abs":
        lat = expected_ms if argmax_ms is None else expected_ms + (argmax_ms - expected_ms.detach())
        return ce + cfg.abs_lambda * torch.abs(lat / (cfg.abs_target * t) - 1.0)
    if cfg.loss == "mul":
        return cfg.mul_a * ce * (torch.log(expected_ms) / math.log(t)) ** cfg.mul_beta
    return ce + cfg.add_lambda * (expected_ms - t) / t


@dataclass
class SearchResult:
    indices: list[int]
    argmax_indices: list[int]
    latency_ms: float
    argmax_latency_ms: float
    repair: list[dict]
    history: list[dict]
    probs: list[list[float]]
    config: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Progress hooks; the CLI's rich bars implement them (the default prints nothing)."""

    def estimate(self, plan: dict[str, Any]) -> None: ...
    def start(self, total_steps: int, done_steps: int) -> None: ...
    def step(self, info: dict[str, float]) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _epoch_perm(n: int, seed: int, epoch: int, stream: int) -> Tensor:
    g = torch.Generator().manual_seed(1_000_003 * seed + 1009 * epoch + stream)
    return torch.randperm(n, generator=g)


@dataclass
class _Splits:
    """The training set split into α and weight parts (fixed by the seed), and steps per epoch."""

    arch_idx: Tensor
    weight_idx: Tensor
    per_step: int  # images per step over all processes
    steps: int  # weight steps per epoch
    arch_steps: int  # distinct α batches per epoch


@dataclass
class _Trainee:
    """Everything an epoch updates (and a checkpoint stores)."""

    supernet: Supernet
    alphas: Alphas
    model: torch.nn.Module  # the supernet, or its DDP wrapper
    w_opt: torch.optim.Optimizer
    w_sched: Any
    a_opt: torch.optim.Optimizer
    path_gen: torch.Generator
    history: list[dict] = field(default_factory=list)


def run_search(space: SearchSpace, lut: LatencyTable, train_set, val_set, num_classes: int,
               cfg: SearchConfig, out_dir: str | Path, resume: bool = False,
               reporter: Reporter | None = None, fingerprint: dict | None = None,
               on_checkpoint: Callable[[int], None] | None = None,
               started: float | None = None) -> SearchResult:
    """Search `space` on the proxy data; checkpoint to out_dir/search.ckpt each epoch.
    `started` (time.perf_counter() at the job's start) charges the LUT and data to the box."""
    cfg.validate()
    rep = reporter or Reporter()
    rank, world = _dist()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() \
        else torch.device("cpu")
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME
    fp = {"config": _jsonable(asdict(cfg)), "skeleton": space.describe(), "lut": lut.to_json(),
          "world_size": world, **(fingerprint or {})}
    sp = split_data(len(train_set), cfg, world)
    torch.manual_seed(cfg.seed)
    supernet = proxy_supernet(space, num_classes, cfg).to(device)
    alphas = Alphas(supernet.num_choices, torch.Generator().manual_seed(cfg.seed + 1)).to(device)
    st = _existing_checkpoint(ckpt_path, fp, resume, rank)
    resuming = resume and st is not None
    plan: dict | None = None
    epochs, warmup_epochs = cfg.epochs, cfg.warmup_epochs
    if cfg.epochs == 0:  # the time box sets the epochs; a resumed search keeps its plan
        if resuming:
            plan = st["time_plan"]
        else:
            x0, y0 = proxy_batch(train_set, sp.weight_idx[:cfg.batch_size], device)
            plan = _time_plan(supernet, alphas, x0, y0, cfg, sp.steps, len(val_set) / max(world, 1), started,
                              world)
        epochs, warmup_epochs = plan["epochs"], plan["warmup_epochs"]
        rep.estimate(plan)
    t = _trainee(supernet, alphas, cfg, epochs * sp.steps, world)
    start_epoch = _restore(t, st) if resuming else 0

    rep.start(epochs * sp.steps, start_epoch * sp.steps)
    epoch = start_epoch - 1
    while epoch + 1 < epochs:  # the time box may shorten `epochs` as it goes
        epoch += 1
        warm = epoch < warmup_epochs
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        loss_sum, correct, seen = _train_epoch(t, sp, train_set, lut, cfg, epoch, warm, device, rank, world, rep)
        record = _epoch_record(t, lut, val_set, cfg, epoch, warm, warmup_epochs, device, rank, world)
        record.update(train_loss=mean_over_ranks(loss_sum, seen, world),
                      train_acc=mean_over_ranks(float(correct), seen, world),
                      wall_s=time.perf_counter() - t_wall, cpu_s=time.process_time() - t_cpu)
        t.history.append(record)
        rep.epoch(record)
        if plan is not None and started is not None and not resuming:  # keep to the box
            plan = replan(plan, time.perf_counter() - started, epoch + 1, record["wall_s"], warm)
            if world > 1:
                box = [plan]
                dist.broadcast_object_list(box, src=0)
                plan = box[0]
            epochs, warmup_epochs = plan["epochs"], plan["warmup_epochs"]
        if rank == 0:
            _save(ckpt_path, t, fp, epoch + 1, epoch + 1 >= warmup_epochs, epochs, plan)
        if world > 1:
            dist.barrier()
        if on_checkpoint is not None:
            on_checkpoint(epoch + 1)
    rep.close()
    return _derive(t, lut, cfg, epochs, warmup_epochs, plan)


def split_data(n: int, cfg: SearchConfig, world: int) -> _Splits:
    """Split n training images into α and weight parts, fixed by the seed."""
    order = _epoch_perm(n, cfg.seed, -1, 7)
    n_arch = max(1, int(round(n * cfg.arch_split)))
    arch_idx, weight_idx = order[:n_arch], order[n_arch:]
    per_step = cfg.batch_size * world
    steps = len(weight_idx) // per_step
    if steps < 1:
        raise EdgedetError(f"training split of {len(weight_idx)} images is smaller than one batch of "
                           f"{per_step}; use more data or a smaller batch")
    return _Splits(arch_idx, weight_idx, per_step, steps, max(1, len(arch_idx) // per_step))


def _existing_checkpoint(path: Path, fp: dict, resume: bool, rank: int) -> dict | None:
    """The checkpoint in the output folder, if any; refused when it belongs to another search
    (resuming) or is unfinished (not resuming)."""
    if not (path.is_file() and (resume or rank == 0)):
        return None
    st = load_checkpoint(path)
    if resume and st["fingerprint"] != fp:
        diff = sorted(k for k in fp if fp.get(k) != st["fingerprint"].get(k))
        raise EdgedetError(f"{path} belongs to a different search (differs in: {', '.join(diff)}); "
                           f"rerun without --resume or use another --out")
    if not resume and st["epoch"] < st.get("epochs_total", st["fingerprint"]["config"]["epochs"]):
        raise EdgedetError(f"{path} holds an unfinished search; pass --resume to continue it, "
                           f"or use another --out")
    return st


def _trainee(supernet: Supernet, alphas: Alphas, cfg: SearchConfig, total_steps: int, world: int) -> _Trainee:
    """Optimisers (SGD + cosine for weights, Adam for α) and the path generator."""
    model = supernet
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(supernet, find_unused_parameters=True)
    w_opt = torch.optim.SGD(supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                            weight_decay=cfg.weight_decay)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=total_steps)
    a_opt = torch.optim.Adam(alphas.parameters(), lr=cfg.arch_lr, betas=cfg.arch_betas, weight_decay=0.0)
    path_gen = torch.Generator().manual_seed(cfg.seed + 2)
    return _Trainee(supernet, alphas, model, w_opt, w_sched, a_opt, path_gen)


def _restore(t: _Trainee, st: dict) -> int:
    """Load a checkpoint's state into `t`; returns the epoch to continue from."""
    t.supernet.load_state_dict(st["supernet"])
    t.alphas.load_state_dict(st["alphas"])
    t.w_opt.load_state_dict(st["w_opt"])
    t.w_sched.load_state_dict(st["w_sched"])
    t.a_opt.load_state_dict(st["a_opt"])
    t.path_gen.set_state(st["path_gen"])
    set_rng_state(st["rng"])
    t.history = st["history"]
    return st["epoch"]


def _train_epoch(t: _Trainee, sp: _Splits, train_set, lut: LatencyTable, cfg: SearchConfig, epoch: int,
                 warm: bool, device: torch.device, rank: int, world: int, rep: Reporter) -> tuple[float, int, int]:
    """One epoch of weight steps on sampled paths (uniform in the warm-up), with an α step
    every `arch_every` of them after it; returns (summed loss, correct, images seen)."""
    torch.manual_seed(cfg.seed * 7919 + epoch)
    perm_w = sp.weight_idx[_epoch_perm(len(sp.weight_idx), cfg.seed, epoch, 0)]
    perm_a = sp.arch_idx[_epoch_perm(len(sp.arch_idx), cfg.seed, epoch, 1)]
    t.model.train()
    seen = correct = 0
    loss_sum = 0.0
    for step in range(sp.steps):
        lo = step * sp.per_step + rank * cfg.batch_size
        x, y = proxy_batch(train_set, perm_w[lo:lo + cfg.batch_size], device)
        t.supernet.use_paths(sample_paths(t.alphas, t.path_gen, uniform=warm))
        logits = t.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        t.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        t.w_opt.step()
        t.w_sched.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        info = {"epoch": epoch, "loss": loss_sum / seen, "acc": correct / seen}
        if not warm and (step + 1) % cfg.arch_every == 0:
            k = (step // cfg.arch_every) % sp.arch_steps
            lo = k * sp.per_step + rank * cfg.batch_size
            xa, ya = proxy_batch(train_set, perm_a[lo:lo + cfg.batch_size], device)
            info["arch_loss"] = _arch_step(t.supernet, t.alphas, t.a_opt, t.path_gen, lut, cfg, xa, ya, world)
        with torch.no_grad():
            info["expected_ms"] = float(lut.expected(list(t.alphas)))
        info["entropy"] = t.alphas.entropy()
        rep.step(info)
    return loss_sum, correct, seen


def _epoch_record(t: _Trainee, lut: LatencyTable, val_set, cfg: SearchConfig, epoch: int, warm: bool,
                  warmup_epochs: int, device: torch.device, rank: int, world: int) -> dict[str, Any]:
    """The epoch's line of search.json: validation accuracy, latencies, α (train figures and
    times are added by the caller)."""
    if warm:  # α has not moved: the argmax is arbitrary, so score random paths instead
        n_paths = SAMPLED_EVAL_PATHS if epoch + 1 == warmup_epochs else 1
        val_sampled = sampled_accuracy(t.supernet, t.alphas, val_set, cfg.seed, cfg.batch_size, device, rank, world,
                                       n_paths)
        val_acc = None
    else:
        val_sampled = None
        val_acc = evaluate(t.supernet, t.alphas.argmax(), val_set, cfg.batch_size, device, rank, world)
    with torch.no_grad():
        expected = float(lut.expected(list(t.alphas)))
    return {
        "epoch": epoch + 1, "phase": "warmup" if warm else "search", "train_loss": None, "train_acc": None,
        "val_acc_argmax": val_acc, "val_acc_sampled": val_sampled, "expected_latency_ms": expected,
        "argmax_latency_ms": lut.latency(t.alphas.argmax()), "alpha_entropy": t.alphas.entropy(),
        "lr": t.w_sched.get_last_lr()[0],
        "probs": [[round(float(v), 6) for v in p] for p in t.alphas.probs()],
        "wall_s": None, "cpu_s": None,
    }


def _save(path: Path, t: _Trainee, fp: dict, epoch: int, warmup_done: bool, epochs: int, plan: dict | None) -> None:
    save_checkpoint(path, {
        "fingerprint": fp, "epoch": epoch, "warmup_done": warmup_done, "epochs_total": epochs, "time_plan": plan,
        "supernet": t.supernet.state_dict(), "alphas": t.alphas.state_dict(), "w_opt": t.w_opt.state_dict(),
        "w_sched": t.w_sched.state_dict(), "a_opt": t.a_opt.state_dict(), "path_gen": t.path_gen.get_state(),
        "rng": rng_state(), "history": t.history,
    })


def _derive(t: _Trainee, lut: LatencyTable, cfg: SearchConfig, epochs: int, warmup_epochs: int,
            plan: dict | None) -> SearchResult:
    """The argmax architecture fitted into [fit_low·budget, budget]."""
    argmax = t.alphas.argmax()
    logp = [torch.log_softmax(a.detach().cpu(), 0).tolist() for a in t.alphas]
    fit = fit_to_budget(argmax, logp, lut, cfg.budget_ms, cfg.fit_low)
    config = _jsonable(asdict(cfg)) | {"epochs": epochs, "warmup_epochs": warmup_epochs, "time_plan": plan}
    return SearchResult(indices=fit.indices, argmax_indices=argmax, latency_ms=fit.latency_ms,
                        argmax_latency_ms=lut.latency(argmax), repair=fit.moves, history=t.history,
                        probs=[p.cpu().tolist() for p in t.alphas.probs()], config=config)


def proxy_supernet(space: SearchSpace, num_classes: int, cfg: SearchConfig) -> Supernet:
    """The supernet trained on the proxy task, with the config's recipe (weight sharing for
    QuadraBlocks; MBConv candidates stay separate)."""
    shared = cfg.share_weights and space.block == "quadra"
    net = Supernet(proxy_space(space, cfg.proxy_width), num_classes, cfg.layer_scale, shared=shared)
    if cfg.linear_init == "torch":
        fan_in_init(net)
    return net


def _time_plan(supernet: Supernet, alphas: Alphas, x: Tensor, y: Tensor, cfg: SearchConfig, steps: int,
               val_per_rank: float, started: float | None, world: int) -> dict:
    """Measure the step costs here and plan the epochs (rank 0's plan for every rank)."""
    step_s, arch_s = measure_steps(supernet, alphas, x, y)
    eval_s = 0.35 * step_s * val_per_rank / cfg.batch_size  # forward only, no backward
    spent = time.perf_counter() - started if started is not None else 0.0
    plan = plan_epochs(cfg.time_box_s, spent, step_s, arch_s, eval_s, steps, cfg.arch_every,
                       cfg.warmup_share).to_json()
    if world > 1:
        box = [plan]
        dist.broadcast_object_list(box, src=0)
        plan = box[0]
    return plan


def _arch_step(supernet: Supernet, alphas: Alphas, a_opt: torch.optim.Optimizer, gen: torch.Generator,
               lut: LatencyTable, cfg: SearchConfig, x: Tensor, y: Tensor, world: int) -> float:
    """One two-path α update with the gate-gradient estimator and log-sum-exp rescaling."""
    pairs, active = sample_pairs(alphas, gen)
    gates = supernet.use_pairs(pairs, active, device=x.device)
    supernet.train()
    ce = F.cross_entropy(supernet(x), y)
    alpha_list = list(alphas)
    st = lut.latency(alphas.argmax()) if cfg.abs_straight_through else None
    loss = latency_loss(ce, lut.expected(alpha_list), cfg, st)
    grads = torch.autograd.grad(loss, gates + alpha_list, allow_unused=True)
    gate_grads, direct = grads[:len(gates)], grads[len(gates):]
    a_opt.zero_grad(set_to_none=True)
    old = []
    for a, d, gg, pair in zip(alpha_list, direct, gate_grads, pairs, strict=True):
        g = torch.zeros_like(a) if d is None else d.clone()
        if gg is not None:
            g[list(pair)] += gate_gradient(a[list(pair)], gg)
        a.grad = g
        old.append(a.detach()[list(pair)].clone())
    if world > 1:
        flat = torch.cat([a.grad for a in alpha_list])
        dist.all_reduce(flat)
        flat /= world
        for a, chunk in zip(alpha_list, flat.split([len(a) for a in alpha_list]), strict=True):
            a.grad.copy_(chunk)
    a_opt.step()
    for a, pair, o in zip(alpha_list, pairs, old, strict=True):
        rescale_pair(a, pair, o)
    for m in supernet.mixed_layers():
        m.pair, m.gates = None, None
    return float(loss.detach())


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
