"""Recursive gated convolution gⁿConv (HorNet) as a spatial mixer, order 3 by default.

p0, q0..q_{n-1} = split(Proj_in(x));  p_{k+1} = f_k(p_k) ⊙ DW(q)_k;  y = Proj_out(p_n)
with channel widths C/2^{n-1}, …, C/2, C.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GnConv(nn.Module):
    def __init__(self, dim: int, order: int = 3, kernel_size: int = 7, scale: float = 1.0 / 3.0):
        super().__init__()
        if dim % 2 ** (order - 1):
            raise ValueError(f"gnConv of order {order} needs width divisible by {2 ** (order - 1)}, got {dim}")
        self.dims = [dim // 2**i for i in range(order)][::-1]
        self.scale = scale
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        total = sum(self.dims)
        self.dwconv = nn.Conv2d(total, total, kernel_size, padding=kernel_size // 2, groups=total)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        p, q = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(q) * self.scale, self.dims, dim=1)
        p = p * gates[0]
        for pw, gate in zip(self.pws, gates[1:], strict=True):
            p = pw(p) * gate
        return self.proj_out(p)
