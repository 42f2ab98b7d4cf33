"""Which parameters test-time adaptation may change: the affine γ, β of every normalisation
layer (BatchNorm, LayerNorm incl. LayerNorm2d, GroupNorm). Everything else is frozen, and
BatchNorm layers run in eval mode so they normalise with the frozen *source* statistics."""

from __future__ import annotations

from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def norm_affine_names(model: nn.Module) -> list[str]:
    """Names (as in `named_parameters`) of the norm layers' weight and bias."""
    out = []
    for mname, m in model.named_modules():
        if isinstance(m, NORM_TYPES):
            for pname in ("weight", "bias"):
                if getattr(m, pname, None) is not None:
                    out.append(f"{mname}.{pname}" if mname else pname)
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def freeze_for_adaptation(model: nn.Module) -> list[str]:
    """Eval mode (source BN statistics, never updated); only norm affine params require
    grad. Returns their names."""
    names = set(norm_affine_names(model))
    model.eval()
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    return sorted(names)
