"""Window multi-head self-attention (Swin) as a spatial mixer: 7×7 windows, relative
position bias, and a half-window cyclic shift with masking on every other block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int = 7, shifted: bool = False, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.window, self.shifted = window, shifted
        self.scale = (dim // self.heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, self.heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)

    def _bias(self, ws: int) -> Tensor:
        """(heads, ws², ws²) relative position bias for a ws×ws window (ws ≤ window)."""
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + (self.window - 1)
        idx = rel[0] * (2 * self.window - 1) + rel[1]
        return self.rel_bias[idx.to(self.rel_bias.device)].permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:  # x: (N,C,H,W)
        n, c, h, w = x.shape
        ws = min(self.window, h, w)
        shift = ws // 2 if self.shifted and min(h, w) > self.window else 0
        x = x.permute(0, 2, 3, 1)
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        win = _partition(x, ws)  # (N·nW, ws², C)
        b, t, _ = win.shape
        qkv = self.qkv(win).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1) + self._bias(ws).unsqueeze(0)
        if shift:
            mask = _shift_mask(hp, wp, ws, shift, x.device)  # (nW, t, t)
            attn = attn.view(n, -1, self.heads, t, t) + mask[None, :, None]
            attn = attn.view(b, self.heads, t, t)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = _merge(self.proj(out), ws, n, hp, wp)
        if shift:
            x = torch.roll(x, (shift, shift), dims=(1, 2))
        return x[:, :h, :w].permute(0, 3, 1, 2)


def _partition(x: Tensor, ws: int) -> Tensor:
    n, h, w, c = x.shape
    x = x.view(n, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _merge(win: Tensor, ws: int, n: int, h: int, w: int) -> Tensor:
    c = win.shape[-1]
    x = win.view(n, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, c)


def _shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """−100 between tokens that the cyclic shift brought from different image regions."""
    region = torch.zeros(1, h, w, 1, device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            region[:, hs, wsl, :] = cnt
            cnt += 1
    ids = _partition(region, ws).squeeze(-1)  # (nW, ws²)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)
