"""Baselines of the QuadraNet memory table, in the same macro skeleton as QuadraNet:
SkipBlock (no spatial mixing), ConvBlock (depthwise 7×7), SwinBlock (7×7 window
attention, shifted every other block) and HorBlock (gⁿConv, order 3)."""

from __future__ import annotations

from torch import nn

from edgedet.kernels import QuadraConv2d
from edgedet.models.hornet import GnConv
from edgedet.models.skeleton import Block, MacroNet
from edgedet.models.swin import WindowAttention

BLOCK_KINDS = ("skip", "conv", "swin", "hor", "quadra", "quadra-saving")


def make_block(kind: str, dim: int, index: int = 0, kernel_size: int = 7, expansion: int = 4) -> Block:
    """One block of the given kind; `index` alternates Swin's shifted windows."""
    if kind == "skip":
        mixer = None
    elif kind == "conv":
        mixer = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
    elif kind == "swin":
        mixer = WindowAttention(dim, window=7, shifted=index % 2 == 1)
    elif kind == "hor":
        mixer = GnConv(dim, order=3, kernel_size=kernel_size)
    elif kind in ("quadra", "quadra-saving"):
        mixer = QuadraConv2d(dim, kernel_size, memory_saving=kind == "quadra-saving")
    else:
        raise ValueError(f"unknown block kind {kind!r}; choose from {', '.join(BLOCK_KINDS)}")
    return Block(dim, mixer, expansion)


def baseline_net(kind: str, width: int = 64, depths: tuple[int, ...] = (2, 3, 18, 2),
                 num_classes: int = 1000, in_chans: int = 3) -> MacroNet:
    widths = [width * 2**i for i in range(len(depths))]
    stages = [[make_block(kind, w, i) for i in range(d)] for w, d in zip(widths, depths, strict=True)]
    return MacroNet(widths, stages, in_chans=in_chans, num_classes=num_classes)
