"""The Triton quadratic conv's backward (recompute a, b from x; fused dx gather; atomic
weight sums) against float64 PyTorch autograd, on the CPU through TRITON_INTERPRET=1."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when triton is imported (see test_export_tensorrt)

pytest.importorskip("triton")

from edgedet.kernels.quadratic import quadratic_conv2d  # noqa: E402
from edgedet.kernels.triton_quadratic import QuadraticConvTriton  # noqa: E402


def _scaled_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("c,h,w,k,stride,dilation", [(3, 9, 7, 3, 1, 1), (2, 8, 9, 5, 2, 1), (2, 9, 8, 3, 1, 2),
                                                     (2, 11, 10, 7, 2, 1)])
def test_triton_backward_matches_float64_autograd(c, h, w, k, stride, dilation):
    g = torch.Generator().manual_seed(c * 10 + k)
    x = torch.randn(2, c, h, w, generator=g)
    wa, wb, wc = (torch.randn(c, 1, k, k, generator=g) * 0.3 for _ in range(3))
    bias = torch.randn(c, generator=g)
    pad = dilation * (k - 1) // 2
    leaves = [t.clone().requires_grad_() for t in (x, wa, wb, wc, bias)]
    y = QuadraticConvTriton.apply(*leaves, stride, pad, dilation)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    ref_leaves = [t.double().requires_grad_() for t in (x, wa, wb, wc, bias)]
    ref = quadratic_conv2d(*ref_leaves, stride, "same", dilation, memory_saving=False)
    ref.backward(gy.double())
    assert y.shape == ref.shape and _scaled_err(y.detach(), ref.detach()) < 1e-5
    for name, got, want in zip(("x", "wa", "wb", "wc", "bias"), leaves, ref_leaves, strict=True):
        assert _scaled_err(got.grad, want.grad) < 1e-5, name
