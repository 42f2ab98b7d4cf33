"""Proxy training: train a derived network from scratch on the proxy task for a fixed
budget of epochs and report its top-1 accuracy (used to compare searched and random
architectures under equal training budgets), and the init both it and the supernet use."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ProxyTrainConfig:
    """AdamW, linear warm-up then cosine; measured to train the deployable (LayerNorm) nets at
    32 px in a few epochs where SGD 0.1 on the skeleton's init stays at chance (docs/nas.md)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    label_smoothing: float = 0.1
    layer_scale: float = 1.0  # blocks' layer scales start here (0: keep the net's own)
    seed: int = 0


def fan_in_init(net: nn.Module) -> None:
    """PyTorch's default fan-in init for every Linear and Conv2d (the skeleton's trunc-normal
    0.02 leaves the MLPs of a short proxy run hardly moving)."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.reset_parameters()


def set_layer_scale(net: nn.Module, value: float) -> None:
    """Every block's layer scales (gamma1, gamma2) to `value`."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("gamma1", "gamma2")):
                p.fill_(value)


def _batches(ds, order: torch.Tensor, batch: int):
    for lo in range(0, len(order), batch):
        items = [ds[int(i)] for i in order[lo:lo + batch]]
        yield torch.stack([a for a, _ in items]), torch.as_tensor([b for _, b in items])


def train_proxy(net: nn.Module, train_set, val_set, cfg: ProxyTrainConfig) -> float:
    """Re-initialise (`fan_in_init`, `layer_scale`), train, return validation top-1 accuracy."""
    torch.manual_seed(cfg.seed)
    fan_in_init(net)
    if cfg.layer_scale > 0:
        set_layer_scale(net, cfg.layer_scale)
    steps = cfg.epochs * ((len(train_set) + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    net.train()
    for _ in range(cfg.epochs):
        for x, y in _batches(train_set, torch.randperm(len(train_set), generator=gen), cfg.batch_size):
            loss = F.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in _batches(val_set, torch.arange(len(val_set)), 256):
            correct += int((net(x).argmax(1) == y).sum())
    return correct / len(val_set)
