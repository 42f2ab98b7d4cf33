"""Comparisons against a float64 reference with tolerances scaled to the values' magnitude.

fp32 results differ between CPUs (AVX2 vs AVX-512 kernels sum in different orders), so a
test compares against a float64 reference, allowing `rel` of the reference's largest
magnitude plus `rtol` of each element: `|got - ref| <= rel·max|ref| + rtol·|ref|`."""

from __future__ import annotations

import numpy as np
import torch

FP32_REL = 2e-6  # ≈ 16 ulp of the tensor's largest value: summation order, not a wrong result


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def scaled_error(got, ref) -> float:
    """max |got - ref| / max |ref| (0 when both are zero)."""
    g, r = _np(got), _np(ref)
    scale = float(np.abs(r).max(initial=0.0))
    err = float(np.abs(g - r).max(initial=0.0))
    return err / scale if scale > 0 else err


def assert_close_scaled(got, ref, rel: float = FP32_REL, rtol: float = 0.0, what: str = "") -> None:
    g, r = _np(got), _np(ref)
    assert g.shape == r.shape, f"{what} shape {g.shape} != {r.shape}"
    scale = float(np.abs(r).max(initial=0.0))
    bound = rel * scale + rtol * np.abs(r)
    bad = np.abs(g - r) > bound
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.abs(g - r) - bound)), g.shape)
        raise AssertionError(
            f"{what} {int(bad.sum())} of {g.size} elements off; worst at {tuple(int(v) for v in i)}: "
            f"got {g[i]:.9g}, ref {r[i]:.9g} (scaled error {scaled_error(g, r):.3g}, allowed {rel:g})"
        )
