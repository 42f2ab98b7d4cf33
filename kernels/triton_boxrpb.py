"""BoxRPB cross-attention with a fused Triton kernel (forward, inference).

softmax(q·kᵀ + By[row(j)] + Bx[col(j)] + mask_j)·v, flash-attention style: each program
streams the H·W keys in blocks with an online softmax and adds the axial bias on the fly
from the (Q,H) and (Q,W) tables, so neither the (Q,H·W) bias nor the attention matrix is
ever written to memory. The small parts (q/k/v projections, the two bias MLPs over Q·(H+W)
offsets) stay as PyTorch matmuls. Used by the TensorRT plugin `edgedet::BoxRPBAttention`;
runs on CPU under `TRITON_INTERPRET=1` for testing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from edgedet.kernels import boxrpb_functional as functional


@triton.jit
def _boxrpb_attn_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    bx_ptr,
    by_ptr,
    mask_ptr,
    o_ptr,
    NQ,
    HW,
    H,
    W,
    D,
    M,
    HAS_MASK: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    bm = tl.program_id(0)  # batch * heads + head
    qb = tl.program_id(1)
    b = bm // M
    rq = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rd = tl.arange(0, BLOCK_D)
    q_ok = rq < NQ
    d_ok = rd < D
    q = tl.load(
        q_ptr + bm * NQ * D + rq[:, None] * D + rd[None, :], mask=q_ok[:, None] & d_ok[None, :], other=0.0
    ).to(tl.float32)
    m_i = tl.full((BLOCK_Q,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_Q,), tl.float32)
    acc = tl.zeros((BLOCK_Q, BLOCK_D), tl.float32)
    for start in range(0, HW, BLOCK_N):
        rn = start + tl.arange(0, BLOCK_N)
        n_ok = rn < HW
        kv_mask = n_ok[:, None] & d_ok[None, :]
        kt = tl.load(k_ptr + bm * HW * D + rn[:, None] * D + rd[None, :], mask=kv_mask, other=0.0).to(
            tl.float32
        )
        s = tl.dot(q, tl.trans(kt), input_precision="ieee")
        row = rn // W
        col = rn % W
        both = q_ok[:, None] & n_ok[None, :]
        s += tl.load(by_ptr + bm * NQ * H + rq[:, None] * H + row[None, :], mask=both, other=0.0).to(
            tl.float32
        )
        s += tl.load(bx_ptr + bm * NQ * W + rq[:, None] * W + col[None, :], mask=both, other=0.0).to(
            tl.float32
        )
        if HAS_MASK:
            s += tl.load(mask_ptr + b * HW + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        vt = tl.load(v_ptr + bm * HW * D + rn[:, None] * D + rd[None, :], mask=kv_mask, other=0.0).to(
            tl.float32
        )
        acc = acc * alpha[:, None] + tl.dot(p, vt, input_precision="ieee")
        l_i = l_i * alpha + tl.sum(p, axis=1)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(
        o_ptr + bm * NQ * D + rq[:, None] * D + rd[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=q_ok[:, None] & d_ok[None, :],
    )


def fused_axial_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bx: Tensor,
    by: Tensor,
    height: int,
    width: int,
    mask_bias: Tensor | None = None,
    block_q: int = 16,
    block_n: int = 32,
) -> Tensor:
    """q (B,M,Q,D) already scaled, k/v (B,M,HW,D), bx (B,M,Q,W), by (B,M,Q,H),
    mask_bias (B,HW) added to every logit of a key (None: no mask) → (B,M,Q,D)."""
    bsz, heads, nq, d = q.shape
    hw = k.shape[2]
    if hw != height * width:
        raise ValueError(f"keys {hw} != height*width {height}*{width}")
    q = q.contiguous()
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    block_d = max(16, triton.next_power_of_2(d))
    mask = mask_bias.contiguous() if mask_bias is not None else q  # dummy pointer when unused
    grid = (bsz * heads, triton.cdiv(nq, block_q))
    _boxrpb_attn_kernel[grid](
        q,
        k.contiguous(),
        v.contiguous(),
        bx.contiguous(),
        by.contiguous(),
        mask,
        out,
        nq,
        hw,
        height,
        width,
        d,
        heads,
        HAS_MASK=mask_bias is not None,
        BLOCK_Q=block_q,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
    )
    return out


def boxrpb_attention(
    query: Tensor,
    boxes: Tensor,
    memory_k: Tensor,
    memory_v: Tensor,
    mask: Tensor,
    weights: list[Tensor],
    *,
    num_heads: int,
    height: int,
    width: int,
    stride: float,
    log8: bool,
) -> Tensor:
    """The whole `edgedet.BoxRPBAttention` node with the attention step in the fused kernel
    (projections and the axial bias MLPs stay PyTorch matmuls)."""
    return functional.boxrpb_attention(
        query,
        boxes,
        memory_k,
        memory_v,
        mask,
        weights,
        num_heads=num_heads,
        height=height,
        width=width,
        stride=stride,
        log8=log8,
        attention=fused_axial_attention,
    )
