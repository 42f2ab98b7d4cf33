"""Self-supervised auxiliary heads on the classifier's pooled features (N,C), used only for
adaptation and dropped afterwards. Each head makes its label-free inputs (`views`, no grad)
and a loss from a feature function `embed: (N,3,H,W) → (N,C)`.

rotation: predict which of 0/90/180/270° an image was rotated by (4-way cross-entropy).
byol: BYOL-style with a stop-gradient predictor (no momentum target, as SimSiam): two
      augmented views, loss −½[cos(p₁, sg z₂) + cos(p₂, sg z₁)], z = projector, p = predictor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AUX_KINDS = ("rotation", "byol")
Embed = Callable[[Tensor], Tensor]


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, cout))


class RotationHead(nn.Module):
    kind = "rotation"

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.mlp = _mlp(dim, hidden, 4)

    @torch.no_grad()
    def views(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Every image rotated by a random multiple of 90°, and that multiple (N,)."""
        k = torch.randint(0, 4, (x.shape[0],), generator=gen)
        return torch.stack([torch.rot90(xi, int(ki), dims=(1, 2)) for xi, ki in zip(x, k, strict=True)]), k

    def loss(self, embed: Embed, views: tuple[Tensor, Tensor]) -> Tensor:
        x, k = views
        return F.cross_entropy(self.mlp(embed(x)), k)


class ByolHead(nn.Module):
    kind = "byol"

    def __init__(self, dim: int, hidden: int = 128, out: int = 64):
        super().__init__()
        self.projector = _mlp(dim, hidden, out)
        self.predictor = _mlp(out, hidden, out)

    @torch.no_grad()
    def views(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return _augment(x, gen), _augment(x, gen)

    def loss(self, embed: Embed, views: tuple[Tensor, Tensor]) -> Tensor:
        n = views[0].shape[0]
        z = self.projector(embed(torch.cat(views)))
        p = self.predictor(z)
        z1, z2, p1, p2 = z[:n], z[n:], p[:n], p[n:]
        return -0.5 * (F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean())


@torch.no_grad()
def translate_flip(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random translation by up to `pad` pixels (reflect-pad + crop) and horizontal flip."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    out = torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(3), out)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """translate_flip, then brightness/contrast jitter."""
    out = translate_flip(x, gen)
    n = x.shape[0]
    gain = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    shift = 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    return out * gain + shift


def make_aux_head(kind: str, dim: int) -> nn.Module:
    if kind == "rotation":
        return RotationHead(dim)
    if kind == "byol":
        return ByolHead(dim)
    raise ValueError(f"unknown auxiliary head {kind!r}; choose from {', '.join(AUX_KINDS)}")


class AuxNet(nn.Module):
    """Classifier (with `embed` and `head`) plus an auxiliary head beside it.

    forward(x) → logits (N,K);  forward(x, views) → the auxiliary loss on those views (x unused)."""

    def __init__(self, net: nn.Module, aux: nn.Module):
        super().__init__()
        self.net, self.aux = net, aux

    def forward(self, x: Tensor, views: tuple[Tensor, ...] | None = None) -> Tensor:
        if views is None:
            return self.net(x)
        return self.aux.loss(self.net.embed, views)
