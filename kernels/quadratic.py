"""Quadratic depthwise convolution: y = (Wa⊛x) ⊙ (Wb⊛x) + Wc⊛x + b.

Implementations with identical values and gradients:
- plain autograd (keeps x, Wa⊛x and Wb⊛x alive for backward);
- memory-saving: a `torch.autograd.Function` that saves only x and the weights and
  recomputes Wa⊛x, Wb⊛x in backward (the QuadraNet paper's trick), the three depthwise
  convolutions run as one grouped convolution with 3C outputs;
- on CPU, when edgedet's C++ op is built (`edgedet.kernels.torch_extension`), the same
  memory-saving Function with a fused forward and backward (one pass over each window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from edgedet.kernels import torch_extension


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps H, W at stride 1 (odd kernels only)."""
    if kernel_size % 2 == 0:
        raise ValueError(f"padding='same' needs an odd kernel size, got {kernel_size}")
    return dilation * (kernel_size - 1) // 2


def _check(x: Tensor, wa: Tensor, wb: Tensor, wc: Tensor, bias: Tensor | None) -> None:
    if x.dim() != 4:
        raise ValueError(f"quadratic_conv2d expects x of shape (N,C,H,W), got {tuple(x.shape)}")
    c = x.shape[1]
    for name, w in (("wa", wa), ("wb", wb), ("wc", wc)):
        if w.dim() != 4 or w.shape[0] != c or w.shape[1] != 1:
            raise ValueError(f"{name} must have shape (C=={c},1,k,k) for a depthwise conv, got {tuple(w.shape)}")
    if not (wa.shape == wb.shape == wc.shape):
        raise ValueError("wa, wb and wc must have the same shape")
    if bias is not None and bias.shape != (c,):
        raise ValueError(f"bias must have shape ({c},), got {tuple(bias.shape)}")


def stack_weights(wa: Tensor, wb: Tensor, wc: Tensor) -> Tensor:
    """(C,1,k,k)×3 → (3C,1,k,k) ordered [a_0,b_0,c_0,a_1,...] so groups=C gives each
    channel its three filters."""
    return torch.stack((wa, wb, wc), dim=1).flatten(0, 1)


def _grouped(x: Tensor, w3: Tensor, stride: int, padding: int, dilation: int) -> tuple[Tensor, Tensor, Tensor]:
    out = F.conv2d(x, w3, None, stride, padding, dilation, groups=x.shape[1])
    n, _, h, w = out.shape
    out = out.view(n, x.shape[1], 3, h, w)
    return out[:, :, 0], out[:, :, 1], out[:, :, 2]


class _QuadraticConvSaving(torch.autograd.Function):
    """Saves x and the weights only; recomputes the two linear branches in backward."""

    @staticmethod
    def forward(ctx, x, wa, wb, wc, bias, stride, padding, dilation):  # noqa: D401
        w3 = stack_weights(wa, wb, wc)
        a, b, c = _grouped(x, w3, stride, padding, dilation)
        y = torch.addcmul(c, a, b)
        if bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        ctx.save_for_backward(x, wa, wb, wc)
        ctx.has_bias = bias is not None
        ctx.conf = (stride, padding, dilation)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, wa, wb, wc = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        c = x.shape[1]
        w3 = stack_weights(wa, wb, wc)
        a, b, _ = _grouped(x, w3, stride, padding, dilation)
        # dL/d(Wa⊛x) = g⊙(Wb⊛x), dL/d(Wb⊛x) = g⊙(Wa⊛x), dL/d(Wc⊛x) = g
        g3 = torch.stack((g * b, g * a, g), dim=2).flatten(1, 2)
        del a, b
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(x.shape, w3, g3, stride, padding, dilation, groups=c)
        if any(ctx.needs_input_grad[1:4]):
            gw = torch.nn.grad.conv2d_weight(x, w3.shape, g3, stride, padding, dilation, groups=c)
            gw = gw.view(c, 3, 1, *gw.shape[2:])
        gwa = gw[:, 0] if gw is not None and ctx.needs_input_grad[1] else None
        gwb = gw[:, 1] if gw is not None and ctx.needs_input_grad[2] else None
        gwc = gw[:, 2] if gw is not None and ctx.needs_input_grad[3] else None
        gbias = g.sum(dim=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return gx, gwa, gwb, gwc, gbias, None, None, None


class _QuadraticConvFused(torch.autograd.Function):
    """The memory-saving Function on edgedet's C++ CPU op (saves x and the weights only)."""

    @staticmethod
    def forward(ctx, x, wa, wb, wc, bias, stride, padding, dilation):  # noqa: D401
        op = torch_extension.load()
        b = bias if bias is not None else x.new_zeros(x.shape[1])
        ctx.save_for_backward(x, wa, wb, wc)
        ctx.has_bias = bias is not None
        ctx.conf = (stride, padding, dilation)
        return op.forward(x, wa, wb, wc, b, stride, padding, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, wa, wb, wc = ctx.saved_tensors
        gx, gwa, gwb, gwc = torch_extension.load().backward(g, x, wa, wb, wc, *ctx.conf)
        gbias = g.sum(dim=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return gx, gwa, gwb, gwc, gbias, None, None, None


def _fused_ok(x: Tensor, *ts: Tensor | None) -> bool:
    """edgedet's CPU op applies: CPU float/double tensors of one dtype, eager (no tracing,
    export or dispatch mode), op built."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if any(t is not None and (t.device.type != "cpu" or t.dtype != x.dtype) for t in ts):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or _exporting():
        return False
    if _get_current_dispatch_mode() is not None:  # FlopCounterMode & co. cannot see inside the C++ op
        return False
    return torch_extension.available() is not None


def quadratic_conv2d(
    x: Tensor,
    wa: Tensor,
    wb: Tensor,
    wc: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = "same",
    dilation: int = 1,
    memory_saving: bool = True,
) -> Tensor:
    """(Wa⊛x)⊙(Wb⊛x) + Wc⊛x + b with depthwise weights of shape (C,1,k,k).

    `padding="same"` pads dilation·(k−1)/2 on each side (odd k), so H, W are kept at
    stride 1 and divided by the stride otherwise (rounded up).
    """
    _check(x, wa, wb, wc, bias)
    pad = same_padding(wa.shape[-1], dilation) if padding == "same" else int(padding)
    if memory_saving and _fused_ok(x, wa, wb, wc, bias):
        return _QuadraticConvFused.apply(x, wa, wb, wc, bias, stride, pad, dilation)
    if memory_saving and torch.is_grad_enabled() and not torch.jit.is_tracing() and not _exporting():
        return _QuadraticConvSaving.apply(x, wa, wb, wc, bias, stride, pad, dilation)
    a, b, c = _grouped(x, stack_weights(wa, wb, wc), stride, pad, dilation)
    y = a * b + c
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def _exporting() -> bool:
    is_exporting = getattr(torch.onnx, "is_in_onnx_export", None)
    return bool(is_exporting and is_exporting())


class QuadraConv2d(nn.Module):
    """Depthwise quadratic convolution layer (QuadraNet's spatial mixer)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        memory_saving: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.stride, self.dilation, self.memory_saving = stride, dilation, memory_saving
        shape = (channels, 1, kernel_size, kernel_size)
        self.wa = nn.Parameter(torch.empty(shape))
        self.wb = nn.Parameter(torch.empty(shape))
        self.wc = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Linear branch as a usual depthwise conv; the quadratic branches start small so
        # the layer begins close to a plain depthwise convolution (stable training).
        fan_in = self.kernel_size * self.kernel_size
        nn.init.trunc_normal_(self.wc, std=fan_in**-0.5)
        nn.init.trunc_normal_(self.wa, std=fan_in**-0.5)
        nn.init.trunc_normal_(self.wb, std=0.1 * fan_in**-0.5)

    def forward(self, x: Tensor) -> Tensor:
        return quadratic_conv2d(
            x, self.wa, self.wb, self.wc, self.bias, self.stride, "same", self.dilation, self.memory_saving
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, k={self.kernel_size}, stride={self.stride}, memory_saving={self.memory_saving}"
