"""The macro skeleton shared by QuadraNet and the baselines of its memory table.

Block:  x = x + γ1·Mixer(LN(x));  x = x + γ2·PW2(GELU(PW1(LN(x))))   (ConvNeXt-like)
Net:    stem (k×k stride-k conv + LN) → 4 stages [C, 2C, 4C, 8C], LN + 2×2 stride-2 conv
        between stages → global average pool → LN → linear classifier.
Only the spatial mixer differs between QuadraBlock, ConvBlock, SwinBlock, HorBlock and
SkipBlock (no mixer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgedet.models.layers import LayerNorm2d


class Block(nn.Module):
    """One macro block around a spatial mixer (None = SkipBlock: channel MLP only)."""

    def __init__(self, dim: int, mixer: nn.Module | None, expansion: int = 4, layer_scale: float = 1e-6):
        super().__init__()
        self.mixer = mixer
        if mixer is not None:
            self.norm1 = LayerNorm2d(dim, eps=1e-6)
            self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, expansion * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(expansion * dim, dim)
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        if self.mixer is not None:
            x = x + self.gamma1.view(1, -1, 1, 1) * self.mixer(self.norm1(x))
        y = x.permute(0, 2, 3, 1)  # channels-last for the pointwise MLP
        y = self.gamma2 * self.pw2(self.act(self.pw1(self.norm2(y))))
        return x + y.permute(0, 3, 1, 2)


class MacroNet(nn.Module):
    """Stem + stages of blocks + classifier; `forward_features` gives each stage's output
    (strides 4, 8, 16, 32 by default) for detection necks."""

    def __init__(
        self,
        widths: list[int],
        stages: list[list[nn.Module]],
        strides: list[int] | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem_kernel: int = 4,
        stem_stride: int = 4,
    ):
        super().__init__()
        strides = strides or [1] + [2] * (len(widths) - 1)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], stem_kernel, stride=stem_stride), LayerNorm2d(widths[0], eps=1e-6)
        )
        self.downsample = nn.ModuleList()
        for i in range(len(widths)):
            if i == 0 and strides[0] == 1:
                self.downsample.append(nn.Identity())
                continue
            cin = widths[i - 1] if i > 0 else widths[0]
            s = strides[i]
            self.downsample.append(nn.Sequential(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, widths[i], s, stride=s)))
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], num_classes)
        self.feature_channels = list(widths)
        self.feature_strides = _cumulative(stem_stride, strides)
        self.apply(_init)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(down(x))
            feats.append(x)
        return feats

    def embed(self, x: Tensor) -> Tensor:
        """(N,3,H,W) → (N,C) pooled, normalised features: what the classifier head reads."""
        return self.norm(self.forward_features(x)[-1].mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


def _cumulative(stem_stride: int, strides: list[int]) -> list[int]:
    out, s = [], stem_stride
    for st in strides:
        s *= st
        out.append(s)
    return out


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
