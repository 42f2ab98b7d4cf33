"""Fused quadratic depthwise convolution as one Triton kernel (forward, inference).

One program computes a tile of output pixels of one (image, channel) plane: it walks the
k×k window once, accumulating Wa⊛x, Wb⊛x and Wc⊛x together from the same loaded input,
and writes (Wa⊛x)⊙(Wb⊛x) + Wc⊛x + b — one read of x and one write of y instead of three
convolutions and three intermediates. Used by the TensorRT plugin; runs on CPU under
`TRITON_INTERPRET=1` for testing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _quadconv_kernel(
    x_ptr,
    wa_ptr,
    wb_ptr,
    wc_ptr,
    bias_ptr,
    y_ptr,
    C,
    H,
    W,
    OH,
    OW,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    DIL: tl.constexpr,
    K: tl.constexpr,
    BLOCK: tl.constexpr,
):
    plane = tl.program_id(0)  # n * C + c
    tile = tl.program_id(1)
    c = plane % C
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < OH * OW
    oy = offs // OW
    ox = offs % OW
    x_base = x_ptr + plane * H * W
    w_base = c * K * K
    acc_a = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_c = tl.zeros((BLOCK,), dtype=tl.float32)
    for ky in tl.static_range(K):
        iy = oy * STRIDE - PAD + ky * DIL
        row_ok = (iy >= 0) & (iy < H)
        for kx in tl.static_range(K):
            ix = ox * STRIDE - PAD + kx * DIL
            ok = valid & row_ok & (ix >= 0) & (ix < W)
            xv = tl.load(x_base + iy * W + ix, mask=ok, other=0.0).to(tl.float32)
            widx = w_base + ky * K + kx
            acc_a += xv * tl.load(wa_ptr + widx).to(tl.float32)
            acc_b += xv * tl.load(wb_ptr + widx).to(tl.float32)
            acc_c += xv * tl.load(wc_ptr + widx).to(tl.float32)
    y = acc_a * acc_b + acc_c + tl.load(bias_ptr + c).to(tl.float32)
    tl.store(y_ptr + plane * OH * OW + offs, y.to(y_ptr.dtype.element_ty), mask=valid)


def out_size(n: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def quadconv_triton(
    x: Tensor,
    wa: Tensor,
    wb: Tensor,
    wc: Tensor,
    bias: Tensor | None,
    stride: int = 1,
    pad: int | None = None,
    dilation: int = 1,
    out: Tensor | None = None,
    block: int = 128,
) -> Tensor:
    """(Wa⊛x)⊙(Wb⊛x) + Wc⊛x + b for x (N,C,H,W) contiguous, weights (C,1,k,k).

    `pad=None` is 'same' padding (odd k). Accumulates in fp32 whatever the I/O dtype.
    """
    n, c, h, w = x.shape
    k = wa.shape[-1]
    if pad is None:
        pad = dilation * (k - 1) // 2
    oh, ow = out_size(h, k, stride, pad, dilation), out_size(w, k, stride, pad, dilation)
    if bias is None:
        bias = torch.zeros(c, dtype=x.dtype, device=x.device)
    if out is None:
        out = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device)
    grid = (n * c, triton.cdiv(oh * ow, block))
    _quadconv_kernel[grid](
        x.contiguous(),
        wa.contiguous(),
        wb.contiguous(),
        wc.contiguous(),
        bias.contiguous(),
        out,
        c,
        h,
        w,
        oh,
        ow,
        STRIDE=stride,
        PAD=pad,
        DIL=dilation,
        K=k,
        BLOCK=block,
    )
    return out
