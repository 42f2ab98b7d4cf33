"""The ProxylessNAS supernet: every searchable layer is a MixedLayer of candidate ops with
architecture logits α and binary gates.

Weight step (one path): sample i ~ softmax(α) per layer and run only op i.
α step (two paths): sample two distinct ops, renormalise p over them, sample the active
one; y = x + Σ_j g_j·(o_j(x) − x) with one-hot gates g, so the residual branch of the
active op flows and an identity contributes nothing. The gate gradient estimator

    ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i),   ∂L/∂g_j = Σ (o_j − x) ⊙ ∂L/∂y

(p renormalised over the pair) replaces the non-differentiable sampling; after the
optimiser step the pair's α are shifted so their log-sum-exp is unchanged, leaving the
probabilities of the other ops as they were. Writing o_j − x instead of o_j changes every
∂L/∂g_j by the same constant, which the estimator cancels (Σ_j p_j (δ_ij − p_i) = 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from edgedet.models.layers import LayerNorm2d
from edgedet.models.skeleton import Block, MacroNet
from edgedet.nas.space import SearchSpace, build_block


class MixedLayer(nn.Module):
    """Candidate ops of one layer; runs the sampled path (or the two gated paths)."""

    def __init__(self, candidates: list[nn.Module]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.active = 0
        self.pair: tuple[int, int] | None = None
        self.gates: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.pair is None:
            return self.candidates[self.active](x)
        y = x
        for g, j in zip(self.gates, self.pair, strict=True):
            op = self.candidates[j]
            if not isinstance(op, nn.Identity):
                y = y + g * (op(x) - x)
        return y


class ChannelsLastBatchNorm(nn.Module):
    """BatchNorm over the last (channel) dim of a (..., C) tensor, batch statistics only."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).view_as(x)


def batchnorm_blocks(net: nn.Module) -> None:
    """Swap the per-pixel LayerNorms inside every block for batch-statistics BatchNorm (a proxy
    departure: at 32 px, LayerNorm over each pixel's few channels keeps the supernet at chance
    for hundreds of steps; docs/nas.md). Batch statistics in eval too, so a sampled path needs
    no recalibration; the stem and downsampling LayerNorms stay."""
    for m in net.modules():
        if isinstance(m, Block):
            if isinstance(getattr(m, "norm1", None), LayerNorm2d):
                m.norm1 = nn.BatchNorm2d(m.norm1.weight.numel(), track_running_stats=False)
            m.norm2 = ChannelsLastBatchNorm(m.norm2.weight.numel())


class Supernet(nn.Module):
    """The skeleton of `space` with a MixedLayer at each searchable layer; `norm="bn"` trains
    it with BatchNorm in the blocks (see `batchnorm_blocks`), "ln" keeps the blocks' own."""

    def __init__(self, space: SearchSpace, num_classes: int, layer_scale: float = 0.0, norm: str = "ln"):
        super().__init__()
        stages = [
            # plain autograd for the quadratic conv: a proxy search is bound by time, not memory
            [MixedLayer([build_block(space.block, w, c, memory_saving=False)
                         for c in space.layer_choices(s, i)])
             for i in range(n)]
            for s, (w, n) in enumerate(zip(space.widths, space.max_layers, strict=True))
        ]
        self.net = MacroNet(list(space.widths), stages, num_classes=num_classes)
        if norm == "bn":
            batchnorm_blocks(self.net)
        elif norm != "ln":
            raise ValueError(f"supernet norm must be 'ln' or 'bn', got {norm!r}")
        self.num_choices = [len(space.layer_choices(s, i)) for s, i in space.layers()]
        if layer_scale > 0:  # blocks start as near-identities at 1e-6, which a short proxy cannot undo
            with torch.no_grad():
                for name, p in self.net.stages.named_parameters():
                    if name.endswith(("gamma1", "gamma2")):
                        p.fill_(layer_scale)

    def mixed_layers(self) -> list[MixedLayer]:
        return [m for m in self.net.modules() if isinstance(m, MixedLayer)]

    def use_paths(self, indices: list[int]) -> None:
        """One-path mode: layer l runs only op indices[l]."""
        for m, i in zip(self.mixed_layers(), indices, strict=True):
            m.active, m.pair, m.gates = int(i), None, None

    def use_pairs(self, pairs: list[tuple[int, int]], active: list[int],
                  device: torch.device | str = "cpu") -> list[Tensor]:
        """Two-path mode; returns each layer's binary gates (leaf tensors needing grad)."""
        gates = []
        for m, pair, a in zip(self.mixed_layers(), pairs, active, strict=True):
            g = torch.zeros(2, device=device, requires_grad=True)
            with torch.no_grad():
                g[a] = 1.0
            m.pair, m.gates = pair, g
            gates.append(g)
        return gates

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Alphas(nn.Module):
    """Architecture logits α, one vector per searchable layer, initialised N(0, 1e-3)."""

    def __init__(self, num_choices: list[int], generator: torch.Generator | None = None):
        super().__init__()
        self.alpha = nn.ParameterList(
            nn.Parameter(torch.randn(n, generator=generator) * 1e-3) for n in num_choices
        )

    def __iter__(self):
        return iter(self.alpha)

    def __len__(self) -> int:
        return len(self.alpha)

    def probs(self) -> list[Tensor]:
        return [torch.softmax(a.detach(), 0) for a in self.alpha]

    def argmax(self) -> list[int]:
        return [int(a.detach().argmax()) for a in self.alpha]

    def entropy(self) -> float:
        """Mean per-layer entropy of p, normalised by log(#choices): 1 = uniform, 0 = decided."""
        h = [float(-(p * p.clamp_min(1e-12).log()).sum()) / math.log(len(p)) for p in self.probs()]
        return sum(h) / len(h)


def sample_paths(alphas: Alphas, gen: torch.Generator, uniform: bool = False) -> list[int]:
    """One op per layer, i ~ softmax(α) (or uniform during the warm-up)."""
    out = []
    for a in alphas:
        p = torch.ones(len(a)) if uniform else torch.softmax(a.detach(), 0)
        out.append(int(torch.multinomial(p, 1, generator=gen)))
    return out


def sample_pairs(alphas: Alphas, gen: torch.Generator) -> tuple[list[tuple[int, int]], list[int]]:
    """Two distinct ops per layer ~ p, and which of the two is active ~ p renormalised."""
    pairs, active = [], []
    for a in alphas:
        a = a.detach()
        i, j = (int(v) for v in torch.multinomial(torch.softmax(a, 0), 2, replacement=False, generator=gen))
        pairs.append((i, j))
        active.append(int(torch.multinomial(torch.softmax(a[[i, j]], 0), 1, generator=gen)))
    return pairs, active


def gate_gradient(alpha_pair: Tensor, gate_grad: Tensor) -> Tensor:
    """∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i), p = softmax over the pair."""
    p = torch.softmax(alpha_pair.detach(), 0)
    jac = torch.diag(p) - torch.outer(p, p)  # jac[i, j] = p_j (δ_ij − p_i), symmetric
    return jac @ gate_grad


def rescale_pair(alpha: Tensor, pair: tuple[int, int], old_pair_values: Tensor) -> None:
    """Shift the pair's α so their log-sum-exp equals that before the update."""
    idx = list(pair)
    with torch.no_grad():
        alpha[idx] -= torch.logsumexp(alpha[idx], 0) - torch.logsumexp(old_pair_values, 0)
