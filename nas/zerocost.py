"""Training-free accuracy proxies of an untrained network, scored on one or two batches.

    naswot:  log|K|, K[i,j] = #units where images i and j fall on the same side of every
             activation's input (binary codes c, K = c·cᵀ + (1−c)·(1−c)ᵀ; Mellor et al. 2021)
    synflow: Σ_θ |θ ⊙ ∂R/∂θ|, R = Σ f_|θ|(1), the network with |weights| on an all-ones
             input, in float64 (Tanaka et al. 2020; Abdelfattah et al. 2021)
    zico:    Σ_layers log Σ_θ mean|g| / std(g) of per-batch gradients over two batches
             (Li et al. 2023)
Higher is better for all three. `edgedet reproduce nas` measures how each ranks this space.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.errors import EdgedetError

PROXIES = ("naswot", "synflow", "zico")


def naswot(net: nn.Module, x: Tensor) -> float:
    """log-determinant of the binary activation-pattern kernel over the batch x (N,3,H,W)."""
    codes: list[Tensor] = []

    def hook(_m, inp, _out):
        codes.append((inp[0].detach().flatten(1) > 0).to(torch.float64))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.GELU, nn.ReLU))]
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for h in handles:
            h.remove()
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    for c in codes:
        c = c.reshape(n, -1)
        k += c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else -math.inf


def synflow(net: nn.Module, x: Tensor) -> float:
    """Synaptic flow of the network with absolute weights, in float64 (no overflow)."""
    m = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m.zero_grad(set_to_none=True)
    m(torch.ones(1, *x.shape[1:], dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in m.parameters() if p.grad is not None))


def zico(net: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
    """Σ over weight tensors of log(Σ mean|g| / std g), gradients of CE on each batch."""
    grads: dict[str, list[Tensor]] = {}
    net.train()
    for x, y in batches:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        for name, p in net.named_parameters():
            if p.grad is not None and p.dim() > 1:
                grads.setdefault(name, []).append(p.grad.detach().flatten().clone())
    net.zero_grad(set_to_none=True)
    total = 0.0
    for g in grads.values():
        if len(g) < 2:
            continue
        st = torch.stack(g)
        std = st.std(0)
        keep = std > 0
        if keep.any():
            v = float((st.abs().mean(0)[keep] / std[keep]).sum())
            if v > 0:
                total += math.log(v)
    return total


def score(name: str, net: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
    """One proxy's score of `net` on the given (x, y) batches (naswot and synflow use the first)."""
    if name == "naswot":
        return naswot(net, batches[0][0])
    if name == "synflow":
        return synflow(net, batches[0][0])
    if name == "zico":
        return zico(net, batches)
    raise EdgedetError(f"unknown zero-cost proxy {name!r}; choose from {', '.join(PROXIES)}")
