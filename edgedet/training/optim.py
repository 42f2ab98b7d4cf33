"""Optimiser set-up shared by classification and detection training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: weight decay on matrices and kernels; none on norms, biases, layer
    scales (ndim ≤ 1) or embeddings (a parameter of a module named *embed*, e.g. query or
    level embeddings, as DETR recipes exclude them)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = name.split(".")[-2] if "." in name else name
        skip = p.ndim <= 1 or name.endswith(".bias") or "embed" in owner
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this torch has one (CPU since 2.4): one pass over
    all parameters instead of ~10 ops each, ~5% of a small detector's step on one core."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)
