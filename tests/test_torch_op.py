"""edgedet's PyTorch CPU op for the quadratic conv: float64 gradcheck, the same values and
gradients as the reference grouped-conv Function, and that quadratic_conv2d uses it."""

from __future__ import annotations

import pytest
import torch

from edgedet.kernels import quadratic, torch_extension
from edgedet.kernels.quadratic import quadratic_conv2d

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def op():
    """Built once (≈ 35 s the first time, then from the cache)."""
    return torch_extension.load()


@pytest.mark.parametrize("c,h,k,stride,dilation", [(3, 9, 3, 1, 1), (2, 11, 5, 2, 1), (2, 10, 3, 1, 2)])
def test_gradcheck_float64(op, c, h, k, stride, dilation):
    g = torch.Generator().manual_seed(c * h)
    x = torch.randn(2, c, h, h, dtype=torch.double, generator=g, requires_grad=True)
    ws = [torch.randn(c, 1, k, k, dtype=torch.double, generator=g, requires_grad=True) for _ in range(3)]
    b = torch.randn(c, dtype=torch.double, generator=g, requires_grad=True)
    assert quadratic._fused_ok(x, *ws, b)

    def f(x, wa, wb, wc, b):
        return quadratic_conv2d(x, wa, wb, wc, b, stride=stride, dilation=dilation)

    assert torch.autograd.gradcheck(f, (x, *ws, b))


def test_fused_matches_reference_float32(op):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 20, 20, generator=g, requires_grad=True)
    ws = [(torch.randn(16, 1, 7, 7, generator=g) * 0.1).requires_grad_(True) for _ in range(3)]
    b = torch.randn(16, generator=g, requires_grad=True)
    y = quadratic_conv2d(x, *ws, b)
    assert y.grad_fn.name() == "_QuadraticConvFusedBackward"
    gy = torch.randn(y.shape, generator=g)
    got = torch.autograd.grad(y, [x, *ws, b], gy)
    leaves = [t.detach().double().requires_grad_(True) for t in (x, *ws, b)]
    ref = quadratic_conv2d(*leaves, memory_saving=False)
    want = torch.autograd.grad(ref, leaves, gy.double())
    scale = max(1.0, ref.abs().max().item())
    assert (y.double() - ref).abs().max().item() <= 1e-5 * scale
    for a, w in zip(got, want, strict=True):
        assert (a.double() - w).abs().max().item() <= 1e-4 * max(1.0, w.abs().max().item())
    with torch.no_grad():  # eager inference takes the op too
        assert (quadratic_conv2d(x, *ws, b).double() - ref).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "n,c,h,w,k,stride,dilation,pad",
    [
        (1, 4, 7, 7, 7, 1, 1, 3),  # a late-stage plane: one vector per row, 7 (AVX-512VL) or 3 rows a tile
        (2, 3, 13, 19, 3, 2, 1, 1),  # stride 2, width not a multiple of 8
        (1, 2, 20, 30, 5, 1, 2, 4),  # dilation 2: two-vector tiles plus a last narrow one
        (1, 3, 15, 17, 7, 3, 2, 0),  # no padding, stride 3 with dilation
        (2, 2, 5, 17, 3, 1, 1, 2),  # padding wider than the taps need
    ],
)
def test_forward_float32_matches_float64(op, threads, n, c, h, w, k, stride, dilation, pad):
    """The register-tiled forward (float32 and float64) against the float64 grouped-conv
    reference; 2 threads with one plane splits the rows into blocks."""
    g = torch.Generator().manual_seed(h * w + k)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.double)
    ws = [torch.randn(c, 1, k, k, generator=g, dtype=torch.double) * 0.3 for _ in range(3)]
    b = torch.randn(c, generator=g, dtype=torch.double)
    ref = quadratic_conv2d(x, *ws, b, stride=stride, padding=pad, dilation=dilation, memory_saving=False)
    scale = max(1.0, ref.abs().max().item())
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y32 = op.forward(x.float(), *[t.float() for t in ws], b.float(), stride, pad, dilation)
        y64 = op.forward(x, *ws, b, stride, pad, dilation)
    finally:
        torch.set_num_threads(old)
    assert y32.shape == ref.shape and y32.dtype == torch.float32
    assert (y32.double() - ref).abs().max().item() <= 2e-6 * scale
    assert (y64 - ref).abs().max().item() <= 1e-12 * scale


def test_every_local_include_is_in_the_cache_key():
    """A header the op includes must be hashed into its cache folder, or an edit would reuse a stale build."""
    import re

    from edgedet.kernels import torch_extension

    src = torch_extension._source()
    local = set(re.findall(r'#include\s+"([^"]+)"', src.read_text()))
    assert local and local <= set(torch_extension.HEADERS)
