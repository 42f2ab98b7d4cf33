"""MobileNetV2 inverted-residual block (MBConv), the ProxylessNAS search space's op.

x + BN(PW_proj(ReLU6(BN(DW_k(ReLU6(BN(PW_expand(x)))))))) — used only as the comparison
space of `edgedet reproduce nas`; it sits in the same macro skeleton as QuadraBlocks.
"""

from __future__ import annotations

from torch import Tensor, nn


class MBConvBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 3, expansion: int = 6):
        super().__init__()
        hidden = dim * expansion
        self.kernel_size, self.expansion = kernel_size, expansion
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
