"""Accuracy of the supernet's sub-networks on the proxy validation set (ranks split it),
and the proxy batches they are fed."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from edgedet.nas.supernet import Alphas, Supernet, sample_paths


def proxy_batch(ds, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    items = [ds[int(i)] for i in idx]
    x = torch.stack([a for a, _ in items]).to(device)
    y = torch.as_tensor([b for _, b in items], dtype=torch.long, device=device)
    return x, y


@torch.no_grad()
def evaluate(net: Supernet, indices: list[int], val_set, batch_size: int, device: torch.device,
             rank: int = 0, world: int = 1) -> float:
    """Top-1 accuracy of one sub-network of the supernet (ranks split the set)."""
    net.use_paths(indices)
    net.eval()
    correct = total = 0
    idx = torch.arange(len(val_set))[rank::world]
    for lo in range(0, len(idx), batch_size):
        x, y = proxy_batch(val_set, idx[lo:lo + batch_size], device)
        correct += int((net(x).argmax(1) == y).sum())
        total += len(y)
    if world > 1:
        t = torch.tensor([correct, total], dtype=torch.float64)
        dist.all_reduce(t)
        correct, total = int(t[0]), int(t[1])
    net.train()
    return correct / max(total, 1)


def mean_over_ranks(total: float, count: int, world: int) -> float:
    """total / count summed over all processes."""
    if world > 1:
        t = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / max(count, 1)


def sampled_accuracy(net: Supernet, alphas: Alphas, val_set, seed: int, batch_size: int, device: torch.device,
                     rank: int, world: int, n_paths: int) -> float:
    """Mean top-1 of n_paths uniform random sub-networks (a fixed draw per seed): how much
    the shared weights learned before α starts ranking ops."""
    gen = torch.Generator().manual_seed(seed + 4242)
    accs = [evaluate(net, sample_paths(alphas, gen, uniform=True), val_set, batch_size, device, rank, world)
            for _ in range(n_paths)]
    return sum(accs) / len(accs)
