"""Parameter and FLOP counts. `torch.utils.flop_counter` traces the forward pass; the FLOPs of
each convolution and matrix product come from `edgedet.flops`, the convention the latency
predictor and bench's roofline count with (one multiply-accumulate = 2 FLOPs). Attention
kernels keep torch's own formula (also 2 per MAC); element-wise ops are not counted."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgedet import flops

FLOPS_NOTE = "FLOPs by torch.utils.flop_counter: conv/matmul/attention, 1 MAC = 2 FLOPs, element-wise ops not counted"

aten = torch.ops.aten


def _conv(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, *args, out_shape=None, **kwargs) -> int:
    return flops.conv_transpose(x_shape, w_shape) if transposed else flops.conv(out_shape, w_shape)


def _mm(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return flops.matmul(out_shape, a_shape[-1])


def _addmm(_self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return flops.matmul(out_shape, a_shape[-1])


# aten op → FLOPs from its argument shapes (FlopCounterMode passes shapes for tensors)
FORMULAS = {
    aten.convolution: _conv,
    aten._convolution: _conv,
    aten.mm: _mm,
    aten.bmm: _mm,
    aten.addmm: _addmm,
    aten.baddbmm: _addmm,
}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int = 224, batch: int = 1, in_chans: int = 3) -> int:
    """FLOPs of one forward pass at batch `batch` (model left in its original mode)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, in_chans, input_size, input_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FORMULAS) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
