"""Memory the fused BoxRPB attention writes, measured: peak bytes of live tensors during one
`edgedet.BoxRPBAttention` node (projections, axial bias MLPs, attention) for a grid of query
counts K and feature maps H×W, with the attention step in the fused Triton kernel vs the
PyTorch form that materialises the (K, H·W) bias and logits per head.

The peak is counted at the tensor level (a dispatch mode sees every tensor an op returns and
when its storage is freed), so it is what each form writes to memory; the fused kernel's own
working set (registers and shared memory on a GPU, numpy scratch under `TRITON_INTERPRET=1`
on a CPU) is not a tensor and is not counted. A least-squares fit of

    peak = a + b·K + c·H·W + d·K·(H+W) + d'·K·max(H,W) + e·K·H·W   (bytes)

(the max term: the two bias MLPs run one after the other) then says how each phase grows:
with the fused kernel, e ≈ 0 in both phases, so the node's memory beyond its inputs grows
as K·(H+W) (the Bx, By tables and their MLPs' hidden activations) and H·W (k, v).

Run as `python -m edgedet.bench.reproduce.boxrpb_memory` (it sets TRITON_INTERPRET=1 where
no GPU is present, before Triton is imported); `edgedet reproduce kernels` runs it that way.
"""

from __future__ import annotations

import json
import os
import sys
import weakref

import numpy as np

TERMS = ("const", "K", "HW", "K(H+W)", "Kmax(H,W)", "KHW")
GRID = [(k, h, w) for k in (32, 64, 128) for h, w in ((8, 8), (16, 16), (8, 32), (24, 24))]
QUICK_GRID = [(k, h, w) for k in (16, 32) for h, w in ((4, 4), (8, 8), (4, 12), (12, 12))]


def live_peak(fn) -> int:
    """Peak bytes of live tensor storages created while `fn()` runs (each storage once, freed
    when the last tensor viewing it dies)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.refs: dict[int, int] = {}
            self.size: dict[int, int] = {}
            self.live = self.peak = 0

        def _release(self, ptr: int) -> None:
            self.refs[ptr] -= 1
            if self.refs[ptr] == 0:
                self.live -= self.size.pop(ptr)
                del self.refs[ptr]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    ptr = st.data_ptr()
                    if ptr not in self.refs:
                        self.refs[ptr], self.size[ptr] = 0, st.nbytes()
                        self.live += st.nbytes()
                        self.peak = max(self.peak, self.live)
                    self.refs[ptr] += 1
                    weakref.finalize(t, self._release, ptr)
            return out

    with torch.no_grad(), Count() as mode:
        fn()
    return mode.peak


def phase_peaks(k: int, h: int, w: int, dim: int = 64, heads: int = 4, hidden: int = 64) -> dict[str, int]:
    """Peak live bytes of the two phases of one BoxRPB node (batch 1, K queries, an H×W memory),
    each beyond its inputs: the axial bias (two MLPs over K·(H+W) offsets → Bx, By) and the
    attention step given q, k, v, Bx, By, fused vs PyTorch."""
    import torch

    from edgedet.kernels import boxrpb_functional as functional
    from edgedet.kernels.triton_boxrpb import fused_axial_attention

    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(1, k, 4, generator=g) * 0.5 + 0.25
    mlp = [torch.randn(hidden, 2, generator=g), torch.zeros(hidden), torch.randn(heads, hidden, generator=g)]
    d = dim // heads
    q = torch.randn(1, heads, k, d, generator=g) * d**-0.5
    kv = torch.randn(1, h * w, heads, d, generator=g).transpose(1, 2)  # as the node's head split leaves it
    bias = {}

    def axial() -> None:
        bias["bx"], bias["by"] = functional.axial_bias(boxes, mlp, mlp, h, w, 16.0, True)

    out = {"bias": live_peak(axial)}
    for form, attention in (("fused", fused_axial_attention), ("torch", functional.axial_attention_torch)):
        out[f"attention_{form}"] = live_peak(lambda a=attention: a(q, kv, kv, bias["bx"], bias["by"], h, w, None))
    return out


def fit_growth(rows: list[dict], form: str) -> dict:
    """Non-negative least squares of the peak on TERMS; coefficients in bytes per unit."""
    from scipy.optimize import nnls

    x = np.array([[1.0, r["K"], r["H"] * r["W"], r["K"] * (r["H"] + r["W"]), r["K"] * max(r["H"], r["W"]),
                   r["K"] * r["H"] * r["W"]] for r in rows])
    y = np.array([r["peak_bytes"][form] for r in rows], dtype=float)
    scale = x.max(axis=0)
    theta, _ = nnls(x / scale, y)
    coef = theta / scale
    resid = x @ coef - y
    return {"coef_bytes": dict(zip(TERMS, map(float, coef), strict=True)),
            "max_rel_residual": float(np.max(np.abs(resid) / y))}


PHASES = ("bias", "attention_fused", "attention_torch")


def measure(grid: list[tuple[int, int, int]]) -> dict:
    """Rows {K, H, W, peak_bytes: {phase: bytes}}, the fit of each phase, and how the fused
    node's memory beyond its inputs grows (bias + fused attention: no K·H·W term)."""
    rows = [{"K": k, "H": h, "W": w, "peak_bytes": phase_peaks(k, h, w)} for k, h, w in grid]
    fits = {phase: fit_growth(rows, phase) for phase in PHASES}
    khw = {phase: fits[phase]["coef_bytes"]["KHW"] for phase in PHASES}
    ref = max(khw["attention_torch"], 1.0)
    fused_khw = max(khw["bias"], khw["attention_fused"])
    return {"rows": rows, "fit": fits,
            "growth": {"fused": "K*(H+W)" if fused_khw < 1e-3 * ref else "K*H*W",
                       "torch": "K*H*W" if khw["attention_torch"] > 0 else "K*(H+W)"}}


def main(argv: list[str]) -> int:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    doc = measure(QUICK_GRID if "--quick" in argv else GRID)
    doc["method"] = ("peak bytes of live tensors beyond the inputs in each phase of one BoxRPB node (dispatch-mode "
                     "count, batch 1, 64 channels, 4 heads, bias MLP hidden 64): the axial bias, and the attention "
                     "step fused (Triton kernel"
                     + (" under TRITON_INTERPRET=1" if os.environ.get("TRITON_INTERPRET") == "1" else "")
                     + ") or in PyTorch (materialised bias and logits); fit: non-negative least squares on "
                     + ", ".join(TERMS))
    json.dump(doc, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
