"""Fused quadratic depthwise convolution in Triton: forward and the memory-saving backward.

Forward: one program computes a tile of output pixels of one (image, channel) plane: it walks
the k×k window once, accumulating Wa⊛x, Wb⊛x and Wc⊛x together from the same loaded input,
and writes (Wa⊛x)⊙(Wb⊛x) + Wc⊛x + b — one read of x and one write of y instead of three
convolutions and three intermediates. Used by the TensorRT plugin.

Backward (`QuadraticConvTriton`, saves only x and the weights, as the paper's autograd):
  1. recompute a = Wa⊛x, b = Wb⊛x per output tile and form ga = g⊙b, gb = g⊙a;
  2. dx = Waᵀ⊛ga + Wbᵀ⊛gb + Wcᵀ⊛g in one gather pass per input tile;
  3. dWa/dWb/dWc[c, tap] = Σ ga/gb/g · x(tap), one pass over x per output tile, tile sums
     added atomically into fp32 accumulators.
All run on CPU under `TRITON_INTERPRET=1` for testing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _tap(x_base, oy, ox, valid, ky, kx, H, W, STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr):
    """x under tap (ky, kx) of the output pixels (oy, ox), fp32, zero outside the image."""
    iy = oy * STRIDE - PAD + ky * DIL
    ix = ox * STRIDE - PAD + kx * DIL
    ok = valid & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    return tl.load(x_base + iy * W + ix, mask=ok, other=0.0).to(tl.float32)


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
        for kx in tl.static_range(K):
            xv = _tap(x_base, oy, ox, valid, ky, kx, H, W, STRIDE, PAD, DIL)
            widx = w_base + ky * K + kx
            acc_a += xv * tl.load(wa_ptr + widx).to(tl.float32)
            acc_b += xv * tl.load(wb_ptr + widx).to(tl.float32)
            acc_c += xv * tl.load(wc_ptr + widx).to(tl.float32)
    y = acc_a * acc_b + acc_c + tl.load(bias_ptr + c).to(tl.float32)
    tl.store(y_ptr + plane * OH * OW + offs, y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _bwd_branches_kernel(x_ptr, wa_ptr, wb_ptr, g_ptr, ga_ptr, gb_ptr, C, H, W, OH, OW,
                         STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr, K: tl.constexpr,
                         BLOCK: tl.constexpr):
    """ga = g⊙(Wb⊛x), gb = g⊙(Wa⊛x) for one output tile of one plane (a, b recomputed)."""
    plane = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < OH * OW
    oy = offs // OW
    ox = offs % OW
    x_base = x_ptr + plane * H * W
    w_base = (plane % C) * K * K
    acc_a = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK,), dtype=tl.float32)
    for ky in tl.static_range(K):
        for kx in tl.static_range(K):
            xv = _tap(x_base, oy, ox, valid, ky, kx, H, W, STRIDE, PAD, DIL)
            acc_a += xv * tl.load(wa_ptr + w_base + ky * K + kx).to(tl.float32)
            acc_b += xv * tl.load(wb_ptr + w_base + ky * K + kx).to(tl.float32)
    g = tl.load(g_ptr + plane * OH * OW + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(ga_ptr + plane * OH * OW + offs, g * acc_b, mask=valid)
    tl.store(gb_ptr + plane * OH * OW + offs, g * acc_a, mask=valid)


@triton.jit
def _bwd_input_kernel(ga_ptr, gb_ptr, g_ptr, wa_ptr, wb_ptr, wc_ptr, gx_ptr, C, H, W, OH, OW,
                      STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr, K: tl.constexpr,
                      BLOCK: tl.constexpr):
    """dx for one input tile of one plane: every tap gathers the output pixel it fed."""
    plane = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < H * W
    iy = offs // W
    ix = offs % W
    o_base = plane * OH * OW
    w_base = (plane % C) * K * K
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for ky in tl.static_range(K):
        ty = iy + PAD - ky * DIL  # = oy·STRIDE when this tap of output row oy read row iy
        ty_pos = tl.where(ty >= 0, ty, 0)  # non-negative before // and % (C and numpy round differently)
        oy = ty_pos // STRIDE
        row_ok = (ty >= 0) & (ty_pos % STRIDE == 0) & (oy < OH)
        for kx in tl.static_range(K):
            tx = ix + PAD - kx * DIL
            tx_pos = tl.where(tx >= 0, tx, 0)
            ox = tx_pos // STRIDE
            ok = valid & row_ok & (tx >= 0) & (tx_pos % STRIDE == 0) & (ox < OW)
            o = o_base + oy * OW + ox
            widx = w_base + ky * K + kx
            acc += tl.load(ga_ptr + o, mask=ok, other=0.0) * tl.load(wa_ptr + widx).to(tl.float32)
            acc += tl.load(gb_ptr + o, mask=ok, other=0.0) * tl.load(wb_ptr + widx).to(tl.float32)
            acc += tl.load(g_ptr + o, mask=ok, other=0.0).to(tl.float32) * tl.load(wc_ptr + widx).to(tl.float32)
    tl.store(gx_ptr + plane * H * W + offs, acc.to(gx_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _bwd_weight_kernel(x_ptr, ga_ptr, gb_ptr, g_ptr, gwa_ptr, gwb_ptr, gwc_ptr, C, H, W, OH, OW,
                       STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr, K: tl.constexpr,
                       BLOCK: tl.constexpr):
    """Per tap, Σ over one output tile of ga·x, gb·x, g·x, added into the (C, K·K) fp32 sums."""
    plane = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < OH * OW
    oy = offs // OW
    ox = offs % OW
    x_base = x_ptr + plane * H * W
    o = plane * OH * OW + offs
    ga = tl.load(ga_ptr + o, mask=valid, other=0.0)
    gb = tl.load(gb_ptr + o, mask=valid, other=0.0)
    g = tl.load(g_ptr + o, mask=valid, other=0.0).to(tl.float32)
    w_base = (plane % C) * K * K
    for ky in tl.static_range(K):
        for kx in tl.static_range(K):
            xv = _tap(x_base, oy, ox, valid, ky, kx, H, W, STRIDE, PAD, DIL)
            widx = w_base + ky * K + kx
            tl.atomic_add(gwa_ptr + widx, tl.sum(ga * xv, axis=0))
            tl.atomic_add(gwb_ptr + widx, tl.sum(gb * xv, axis=0))
            tl.atomic_add(gwc_ptr + widx, tl.sum(g * xv, axis=0))


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


def quadconv_triton_backward(g: Tensor, x: Tensor, wa: Tensor, wb: Tensor, wc: Tensor, stride: int, pad: int,
                             dilation: int, block: int = 128) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dWa, dWb, dWc) of y = (Wa⊛x)⊙(Wb⊛x) + Wc⊛x for the output gradient g (N,C,OH,OW);
    the branches are recomputed from x, weight sums are accumulated in fp32."""
    n, c, h, w = x.shape
    k = wa.shape[-1]
    oh, ow = g.shape[-2:]
    x, g = x.contiguous(), g.contiguous()
    wa, wb, wc = wa.contiguous(), wb.contiguous(), wc.contiguous()
    ga = torch.empty(g.shape, dtype=torch.float32, device=g.device)
    gb = torch.empty_like(ga)
    conf = {"STRIDE": stride, "PAD": pad, "DIL": dilation, "K": k, "BLOCK": block}
    out_grid = (n * c, triton.cdiv(oh * ow, block))
    _bwd_branches_kernel[out_grid](x, wa, wb, g, ga, gb, c, h, w, oh, ow, **conf)
    gx = torch.empty_like(x)
    _bwd_input_kernel[(n * c, triton.cdiv(h * w, block))](ga, gb, g, wa, wb, wc, gx, c, h, w, oh, ow, **conf)
    sums = torch.zeros((3, c, k * k), dtype=torch.float32, device=x.device)
    _bwd_weight_kernel[out_grid](x, ga, gb, g, sums[0], sums[1], sums[2], c, h, w, oh, ow, **conf)
    gwa, gwb, gwc = (s.view(c, 1, k, k).to(wa.dtype) for s in sums)
    return gx, gwa, gwb, gwc


class QuadraticConvTriton(torch.autograd.Function):
    """The quadratic conv on the Triton kernels; saves x and the weights only."""

    @staticmethod
    def forward(ctx, x, wa, wb, wc, bias, stride, padding, dilation):  # noqa: D401
        ctx.save_for_backward(x, wa, wb, wc)
        ctx.has_bias = bias is not None
        ctx.conf = (stride, padding, dilation)
        return quadconv_triton(x, wa, wb, wc, bias, stride, padding, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, wa, wb, wc = ctx.saved_tensors
        gx, gwa, gwb, gwc = quadconv_triton_backward(g, x, wa, wb, wc, *ctx.conf)
        gbias = g.sum(dim=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return gx, gwa, gwb, gwc, gbias, None, None, None
