"""The ProxylessNAS supernet: every searchable layer is a MixedLayer of candidate ops with
architecture logits α and binary gates. For the search's proxy the QuadraBlock candidates of
a layer are slices of one shared block (`SharedQuadraBlock`), so every weight step trains
weights that all of them use.

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
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.kernels.quadratic import QuadraConv2d, quadratic_conv2d
from edgedet.models.layers import LayerNorm2d
from edgedet.models.skeleton import Block, MacroNet
from edgedet.nas.proxy import set_layer_scale
from edgedet.nas.space import SearchSpace, build_block


class MixedLayer(nn.Module):
    """Candidate ops of one layer; runs the sampled path (or the two gated paths)."""

    def __init__(self, candidates: list[nn.Module], shared: nn.Module | None = None):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.shared = shared  # the SharedQuadraBlock the candidates slice, if they share weights
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


class SharedQuadraBlock(nn.Module):
    """Every QuadraBlock candidate of a layer as a slice of one block at the largest kernel and
    expansion (Single-Path NAS / OFA weight sharing): candidate (k, e) uses the k×k centre of
    the depthwise kernels and the first e·C hidden channels of the MLP, so every weight step
    trains weights that all candidates use. Norms are batch-statistics BatchNorm (proxy only).
    x (B, C, H, W) → (B, C, H, W)."""

    def __init__(self, dim: int, k_max: int, e_max: int, layer_scale: float):
        super().__init__()
        self.dim, self.k_max = dim, k_max
        self.norm1 = nn.BatchNorm2d(dim, track_running_stats=False)
        self.mixer = QuadraConv2d(dim, k_max, memory_saving=False)
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.norm2 = ChannelsLastBatchNorm(dim)
        self.pw1 = nn.Linear(dim, e_max * dim)
        self.pw2 = nn.Linear(e_max * dim, dim)
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor, k: int, e: int) -> Tensor:
        lo, m = (self.k_max - k) // 2, self.mixer
        wa, wb, wc = (w[:, :, lo:lo + k, lo:lo + k] for w in (m.wa, m.wb, m.wc))
        x = x + self.gamma1.view(1, -1, 1, 1) * quadratic_conv2d(self.norm1(x), wa, wb, wc, m.bias,
                                                                 memory_saving=False)
        h = e * self.dim
        y = self.norm2(x.permute(0, 2, 3, 1))
        y = F.linear(F.gelu(F.linear(y, self.pw1.weight[:h], self.pw1.bias[:h])), self.pw2.weight[:, :h], self.pw2.bias)
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


class _Slice(nn.Module):
    """Candidate (k, e) of a SharedQuadraBlock; holds no weights of its own."""

    def __init__(self, shared: list[SharedQuadraBlock], k: int, e: int):
        super().__init__()
        self._shared, self.k, self.e = shared, k, e  # a list, so the block is not registered twice

    def forward(self, x: Tensor) -> Tensor:
        return self._shared[0](x, self.k, self.e)


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
    """The skeleton of `space` with a MixedLayer at each searchable layer.

    `shared=True` makes a layer's QuadraBlock candidates slices of one block
    (`SharedQuadraBlock`), the proxy recipe the search uses (docs/nas.md: with separate
    candidates the supernet stays at chance for the whole time box). `norm="bn"` trains
    separate candidates with BatchNorm in the blocks (`batchnorm_blocks`), "ln" keeps theirs.
    `layer_scale > 0` starts every block's layer scale there (the blocks' own is 1e-6)."""

    def __init__(self, space: SearchSpace, num_classes: int, layer_scale: float = 0.0, norm: str = "ln",
                 shared: bool = False):
        super().__init__()
        if shared and space.block != "quadra":
            raise ValueError("weight sharing across candidates is built for QuadraBlocks only")
        layer = _shared_layer if shared else _separate_layer
        stages = [[layer(space, s, i, w) for i in range(n)]
                  for s, (w, n) in enumerate(zip(space.widths, space.max_layers, strict=True))]
        self.net = MacroNet(list(space.widths), stages, num_classes=num_classes)
        if norm == "bn":
            batchnorm_blocks(self.net)
        elif norm != "ln":
            raise ValueError(f"supernet norm must be 'ln' or 'bn', got {norm!r}")
        self.num_choices = [len(space.layer_choices(s, i)) for s, i in space.layers()]
        if layer_scale > 0:
            set_layer_scale(self.net, layer_scale)

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


def _separate_layer(space: SearchSpace, stage: int, layer: int, width: int) -> MixedLayer:
    # plain autograd for the quadratic conv: a proxy search is bound by time, not memory
    return MixedLayer([build_block(space.block, width, c, memory_saving=False)
                       for c in space.layer_choices(stage, layer)])


def _shared_layer(space: SearchSpace, stage: int, layer: int, width: int) -> MixedLayer:
    block = SharedQuadraBlock(width, max(space.kernels), max(space.expansions), 1e-6)
    return MixedLayer([_Slice([block], c.kernel, c.expansion) if c else nn.Identity()
                       for c in space.layer_choices(stage, layer)], shared=block)


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
