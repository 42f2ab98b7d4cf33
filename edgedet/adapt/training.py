"""MABN training on labelled source domains.

Stage 1 (joint): classifier + auxiliary head on all source domains mixed, loss
L_main + λ·L_aux; BatchNorm statistics converge to the source statistics (the auxiliary
views do not move them).
Stage 2 (meta-auxiliary): weights and statistics frozen; the meta-parameters θ are the norm
affine γ, β (backbone and auxiliary head). Per episode one source domain gives an unlabelled
support set S and a labelled query set Q; inner step θ' = θ − α∇θ L_aux(S; θ); outer step
θ ← Adam(∇θ [L_main(Q; θ') + λ·L_aux(Q; θ')]), second-order by default (gradients flow
through the inner step), first-order when `second_order` is off.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from edgedet import models
from edgedet.adapt.aux_heads import AuxNet, make_aux_head, translate_flip
from edgedet.adapt.bn_statistics import frozen as frozen_bn_stats
from edgedet.adapt.bn_statistics import support_statistics
from edgedet.adapt.config import MabnConfig
from edgedet.adapt.norm_affine import freeze_for_adaptation
from edgedet.data.domains import DomainShapes, random_source_domain
from edgedet.data.synthetic import CLASSES

Log = Callable[[str], None]
EPISODE_START = 50_000  # image indices of the meta-training episode domains


def build(cfg: MabnConfig, num_classes: int) -> AuxNet:
    """The classifier of `cfg.model` with its auxiliary head, initialised from `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    net = models.create(cfg.model, num_classes=num_classes)
    with torch.no_grad():
        dim = net.embed(torch.zeros(2, 3, cfg.img_size, cfg.img_size)).shape[1]
    return AuxNet(net, make_aux_head(cfg.aux, dim))


@contextlib.contextmanager
def twice_differentiable(model: nn.Module) -> Iterator[None]:
    """QuadraConv's memory-saving autograd Function has a once-differentiable backward; the
    second-order meta-gradient needs its plain autograd path (same weights, same result)."""
    mods = [m for m in model.modules() if isinstance(getattr(m, "memory_saving", None), bool)]
    saved = [m.memory_saving for m in mods]
    for m in mods:
        m.memory_saving = False
    try:
        yield
    finally:
        for m, v in zip(mods, saved, strict=True):
            m.memory_saving = v


def joint_train(model: AuxNet, x: Tensor, y: Tensor, cfg: MabnConfig, log: Log = print) -> None:
    """Stage 1 on the mixed source images x (N,3,H,W), labels y (N,)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = len(x) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        tot = correct = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb, yb = translate_flip(x[idx], gen), y[idx]
            logits = model(xb)
            with frozen_bn_stats(model):
                aux = model(xb, model.aux.views(xb, gen))
            loss = F.cross_entropy(logits, yb) + cfg.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            correct += float((logits.argmax(1) == yb).sum())
        n = steps_per_epoch * cfg.batch_size
        log(f"  joint epoch {epoch + 1}/{cfg.epochs}: loss {tot / n:.3f}, train acc {100 * correct / n:.1f}%")


def inner_step(model: AuxNet, params: dict[str, Tensor], views: tuple[Tensor, ...], lr: float,
               create_graph: bool) -> dict[str, Tensor]:
    """θ' = θ − α∇θ L_aux(views; θ) for the norm affine params θ (a dict by name)."""
    loss = functional_call(model, params, (views[0],), {"views": views})
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {n: p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)}


def meta_train(model: AuxNet, domains: list[tuple[Tensor, Tensor]], cfg: MabnConfig, log: Log = print) -> None:
    """Stage 2 on per-domain source images [(x_d, y_d)]; updates the norm affine params (and,
    with `cfg.meta_aux_head`, the auxiliary head's weights) in place."""
    inner_names = freeze_for_adaptation(model)
    outer = {n: p for n, p in model.named_parameters() if n in inner_names}
    if cfg.meta_aux_head:
        for n, p in model.aux.named_parameters():
            outer.setdefault(f"aux.{n}", p.requires_grad_(True))
    opt = torch.optim.Adam(list(outer.values()), lr=cfg.outer_lr)
    with twice_differentiable(model) if cfg.second_order else contextlib.nullcontext():
        _episodes(model, domains, cfg, inner_names, outer, opt, log)
    for p in model.parameters():
        p.requires_grad_(True)


def _episodes(model: AuxNet, domains: list[tuple[Tensor, Tensor]], cfg: MabnConfig, inner_names: list[str],
              outer: dict[str, Tensor], opt: torch.optim.Optimizer, log: Log) -> None:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    lo, hi = cfg.support
    k = max(1, cfg.episodes // 5)
    tot_before = tot_after = 0.0
    for ep in range(cfg.episodes):
        x, y = domains[int(torch.randint(len(domains), (1,), generator=gen))]
        n_s = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        idx = torch.randperm(len(x), generator=gen)
        s, q = idx[:n_s], idx[n_s:n_s + cfg.query]
        xq, yq = x[q], y[q]
        with support_statistics(model, x[s], cfg.stats == "support"):
            main = _episode_step(model, x[s], xq, yq, cfg, inner_names, outer, opt, gen)
            with torch.no_grad():
                tot_before += float(F.cross_entropy(model(xq), yq))
        tot_after += main
        if (ep + 1) % k == 0:
            log(f"  meta episode {ep + 1}/{cfg.episodes}: query CE without/with the inner step "
                f"{tot_before / k:.3f}/{tot_after / k:.3f}")
            tot_before = tot_after = 0.0


def _episode_step(model: AuxNet, xs: Tensor, xq: Tensor, yq: Tensor, cfg: MabnConfig, inner_names: list[str],
                  outer: dict[str, Tensor], opt: torch.optim.Optimizer, gen: torch.Generator) -> float:
    """Inner step(s) on the support xs, outer step on the query (xq, yq); returns the query CE."""
    theta = {n: outer[n] for n in inner_names}
    params = dict(theta)
    for _ in range(cfg.inner_steps):
        params = inner_step(model, params, model.aux.views(xs, gen), cfg.inner_lr, cfg.second_order)
    if not cfg.second_order:  # first-order: ∂θ'/∂θ taken as the identity
        params = {n: theta[n] + (p - theta[n]).detach() for n, p in params.items()}
    main = F.cross_entropy(functional_call(model, params, (xq,)), yq)
    loss = main + cfg.aux_weight * functional_call(model, params, (xq,), {"views": model.aux.views(xq, gen)})
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return main.item()


def source_data(names: list, per_domain: int, size: int, seed: int,
                start: int = 0) -> list[tuple[Tensor, Tensor]]:
    """(x, y) of index range [start, start+per_domain) in each domain (name or Domain)."""
    return [DomainShapes(n, per_domain, size, start=start, seed=seed).tensors() for n in names]


def episode_domains(source: list[str], cfg: MabnConfig, data_seed: int = 0,
                    start: int = EPISODE_START) -> list[tuple[Tensor, Tensor]]:
    """Meta-training domains: `cfg.meta_domains` random source-range domains (drawn with
    `cfg.seed`), from an index range disjoint from joint training; the fixed source
    domains when `cfg.meta_domains` is 0."""
    if cfg.meta_domains == 0:
        return source_data(source, cfg.train_per_domain, cfg.img_size, data_seed)
    rng = np.random.default_rng([cfg.seed, 7])
    doms = [random_source_domain(source[i % len(source)], rng) for i in range(cfg.meta_domains)]
    return source_data(doms, cfg.meta_domain_images, cfg.img_size, data_seed, start=start)


def train_mabn(cfg: MabnConfig, source: list[str], data_seed: int = 0,
               log: Log = print) -> tuple[AuxNet, AuxNet]:
    """Both stages on the named source domains: (the stage-1 model, the MABN model), eval mode."""
    domains = source_data(source, cfg.train_per_domain, cfg.img_size, data_seed)
    model = build(cfg, num_classes=len(CLASSES))
    joint_train(model, torch.cat([d[0] for d in domains]), torch.cat([d[1] for d in domains]), cfg, log)
    joint = copy.deepcopy(model).eval()
    if cfg.episodes > 0:
        meta_train(model, episode_domains(source, cfg, data_seed), cfg, log)
    return joint, model.eval()
