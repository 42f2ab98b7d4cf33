"""Test-time adaptation of a trained classifier to one target domain from a few unlabelled
images (N,3,H,W); each returns a new model and leaves its input untouched.

source-only: no change.  bn_stats: BatchNorm running statistics re-estimated on the images.
tent: bn_stats, then norm affine γ, β minimise the mean prediction entropy (Adam).
mabn: norm affine γ, β (source statistics frozen) take `steps` plain SGD steps on the
      auxiliary loss, exactly the inner step meta-training learned to make; aux head dropped.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from edgedet.adapt import bn_statistics
from edgedet.adapt.aux_heads import AuxNet
from edgedet.adapt.norm_affine import freeze_for_adaptation

STATS = ("source", "support")  # which BatchNorm statistics MABN's step and inference use


def bn_stats(net: nn.Module, images: Tensor) -> nn.Module:
    """Copy of `net` (eval mode) whose BatchNorm statistics are those of `images` (no-op without BN)."""
    net = copy.deepcopy(net)
    bn_statistics.reestimate(net, images)
    return net.eval()


def tent(net: nn.Module, images: Tensor, steps: int, lr: float = 1e-3) -> nn.Module:
    """bn_stats, then `steps` Adam steps of entropy minimisation on the norm affine params."""
    net = bn_stats(net, images)
    freeze_for_adaptation(net)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        p = net(images).softmax(1)
        loss = -(p * p.clamp_min(1e-12).log()).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _plain(net)


def mabn(model: AuxNet, images: Tensor, steps: int, lr: float, seed: int = 0,
         stats: str = "source") -> nn.Module:
    """The classifier after `steps` SGD steps (rate `lr`) of the auxiliary loss on the norm
    affine params, the auxiliary head dropped. BatchNorm statistics: `stats` "source" keeps
    the frozen source ones; "support" re-estimates them on `images` first (then frozen)."""
    if stats not in STATS:
        raise ValueError(f"unknown statistics {stats!r}; choose from {', '.join(STATS)}")
    model = bn_stats(model, images) if stats == "support" else copy.deepcopy(model)
    freeze_for_adaptation(model)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model(images, model.aux.views(images, gen))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    return _plain(model.net)


def _plain(net: nn.Module) -> nn.Module:
    for p in net.parameters():
        p.requires_grad_(True)
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    net.eval()
    correct = sum(int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)
