"""BatchNorm running statistics: re-estimated on a batch of images, or frozen, in one place.

Test-time adaptation (`test_time.bn_stats`, MABN's `stats="support"`) and meta-training's
support episodes all re-estimate the statistics with `reestimate`; meta-training's outer
step freezes them with `frozen`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate(model: nn.Module, x: Tensor) -> None:
    """In place: every BatchNorm's running mean and variance become exactly those of the
    images x (N,3,H,W), one forward pass with BatchNorm in training mode (cumulative average,
    so the old statistics do not leak in). Each layer's mode and momentum are restored; the
    rest of the model runs in the mode it is in. No-op (no forward) without BatchNorm."""
    bns = batchnorms(model)
    if not bns:
        return
    saved = [(m.training, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen: here, x alone
        m.train()
    try:
        model(x)
    finally:
        for m, (training, momentum) in zip(bns, saved, strict=True):
            m.train(training)
            m.momentum = momentum


@contextlib.contextmanager
def support_statistics(model: nn.Module, x: Tensor, on: bool) -> Iterator[None]:
    """With `on`, BatchNorm running statistics are those of the support images x (N,3,H,W)
    inside the block (the `stats="support"` recipe) and the source ones again after it."""
    bns = batchnorms(model) if on else []
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    if bns:
        reestimate(model, x)
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, nbt) in zip(bns, saved, strict=True):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(nbt)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm keeps normalising with batch statistics but stops updating its running ones."""
    bns = batchnorms(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
