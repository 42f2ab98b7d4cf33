"""Parameter and FLOP counts. FLOPs come from `torch.utils.flop_counter` (matmul, conv,
attention; one multiply-accumulate = 2 FLOPs); element-wise ops are not counted."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_NOTE = "FLOPs by torch.utils.flop_counter: conv/matmul/attention, 1 MAC = 2 FLOPs, element-wise ops not counted"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int = 224, batch: int = 1, in_chans: int = 3) -> int:
    """FLOPs of one forward pass at batch `batch` (model left in its original mode)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, in_chans, input_size, input_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
