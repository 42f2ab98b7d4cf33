"""Proxy training: train a derived network from scratch on the proxy task for a fixed
budget of epochs and report its top-1 accuracy (used to compare searched and random
architectures under equal training budgets)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ProxyTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0


def _batches(ds, order: torch.Tensor, batch: int):
    for lo in range(0, len(order), batch):
        items = [ds[int(i)] for i in order[lo:lo + batch]]
        yield torch.stack([a for a, _ in items]), torch.as_tensor([b for _, b in items])


def train_proxy(net: nn.Module, train_set, val_set, cfg: ProxyTrainConfig) -> float:
    """SGD-Nesterov with a cosine schedule; returns validation top-1 accuracy."""
    torch.manual_seed(cfg.seed)
    steps = cfg.epochs * ((len(train_set) + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
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
