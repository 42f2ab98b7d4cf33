"""Quadratic depthwise convolution: both implementations are correct and agree."""

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_scaled

from edgedet.kernels import QuadraConv2d, quadratic_conv2d

torch.set_num_threads(1)  # tiny tensors: threads only add contention


def _inputs(c=3, k=3, n=2, hw=6, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, hw, hw + 1, generator=g, dtype=dtype, requires_grad=True)
    ws = [torch.randn(c, 1, k, k, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]
    b = torch.randn(c, generator=g, dtype=dtype, requires_grad=True) if bias else None
    return x, ws, b


def _reference(x, wa, wb, wc, bias, stride, pad, dilation):
    """Three separate depthwise convolutions, straight from the definition."""
    conv = lambda w: F.conv2d(x, w, None, stride, pad, dilation, groups=x.shape[1])  # noqa: E731
    y = conv(wa) * conv(wb) + conv(wc)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("memory_saving", [False, True])
@pytest.mark.parametrize("stride,dilation,bias", [(1, 1, True), (2, 1, False), (2, 2, True)])
def test_gradcheck(memory_saving, stride, dilation, bias):
    x, (wa, wb, wc), b = _inputs(c=2, k=3, n=1, hw=5, bias=bias)
    fn = lambda *t: quadratic_conv2d(*t, stride=stride, dilation=dilation, memory_saving=memory_saving)  # noqa: E731
    args = (x, wa, wb, wc) + ((b,) if bias else ())
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_implementations_agree_with_definition(stride, k):
    """fp32 outputs and gradients of both implementations against the definition in float64."""
    x, (wa, wb, wc), b = _inputs(c=4, k=k, hw=9, dtype=torch.float64)
    pad = (k - 1) // 2
    ref = _reference(x, wa, wb, wc, b, stride, pad, 1)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, wa, wb, wc, b), g)
    leaves = [t.detach().float().requires_grad_() for t in (x, wa, wb, wc, b)]
    for saving in (False, True):
        y = quadratic_conv2d(*leaves, stride=stride, memory_saving=saving)
        assert y.dtype == torch.float32
        assert y.shape == ref.shape == (2, 4, -(-9 // stride), -(-10 // stride))
        assert_close_scaled(y, ref, what="y")
        grads = torch.autograd.grad(y, leaves, g.float())
        for name, got, want in zip(("x", "wa", "wb", "wc", "b"), grads, ref_grads, strict=True):
            assert_close_scaled(got, want, what=f"d{name}")


def test_memory_saving_keeps_only_input_and_weights():
    """The saving Function packs x and the three weights; plain autograd also keeps Wa⊛x, Wb⊛x."""
    x, (wa, wb, wc), b = _inputs(c=4, k=3, hw=8, dtype=torch.float32)
    weights = {wa.data_ptr(), wb.data_ptr(), wc.data_ptr()}
    for saving, expected_activations in ((True, 1), (False, 3)):
        packed: list[torch.Tensor] = []

        def pack(t, packed=packed):
            packed.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            quadratic_conv2d(x, wa, wb, wc, b, memory_saving=saving)
        activations = [t for t in packed if t.dim() == 4 and t.shape[0] == x.shape[0]]
        assert len(activations) == expected_activations
        if saving:
            assert activations[0] is x
            assert {t.data_ptr() for t in packed if t.shape == wa.shape} == weights


def test_channels_last_and_module():
    torch.manual_seed(0)
    m = QuadraConv2d(8, 5, stride=2)
    x = torch.randn(2, 8, 11, 11).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = m(x)
    y.square().sum().backward()
    m_plain = QuadraConv2d(8, 5, stride=2, memory_saving=False)
    m_plain.load_state_dict(m.state_dict())
    x2 = x.detach().clone().requires_grad_()
    y2 = m_plain(x2)
    y2.square().sum().backward()
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m.wa.grad, m_plain.wa.grad, rtol=1e-4, atol=1e-5)
    assert y.shape == (2, 8, 6, 6)


def test_no_grad_path_matches():
    x, (wa, wb, wc), b = _inputs(dtype=torch.float32)
    with torch.no_grad():
        y0 = quadratic_conv2d(x, wa, wb, wc, b)
    torch.testing.assert_close(y0, quadratic_conv2d(x, wa, wb, wc, b).detach())


@pytest.mark.parametrize(
    "xshape,wshape,bshape,match",
    [
        ((2, 3, 6), (3, 1, 3, 3), (3,), "expects x of shape"),
        ((2, 3, 6, 6), (4, 1, 3, 3), (3,), "wa must have shape"),
        ((2, 3, 6, 6), (3, 3, 3, 3), (3,), "wa must have shape"),
        ((2, 3, 6, 6), (3, 1, 3, 3), (4,), "bias must have shape"),
        ((2, 3, 6, 6), (3, 1, 4, 4), (3,), "odd kernel"),
    ],
)
def test_bad_shapes_raise(xshape, wshape, bshape, match):
    x = torch.randn(xshape)
    w = torch.randn(wshape)
    with pytest.raises(ValueError, match=match):
        quadratic_conv2d(x, w, w, w, torch.randn(bshape))


def test_mismatched_weight_shapes_raise():
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(ValueError, match="same shape"):
        quadratic_conv2d(x, torch.randn(3, 1, 3, 3), torch.randn(3, 1, 5, 5), torch.randn(3, 1, 3, 3))
