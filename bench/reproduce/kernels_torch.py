"""The three quadratic-conv variants of `reproduce kernels` in PyTorch eager on the CPU (forward,
inference, fp32):

  fused       `edgedet.kernels.quadratic_conv2d`, which runs edgedet's C++ CPU op
              (`kernels/torch_quadraconv.cpp`, one pass, three accumulators) when it is built;
  decomposed  three `F.conv2d(groups=C)` + mul + add + bias;
  grouped     one `F.conv2d` with 3C outputs (groups=C, [a_i, b_i, c_i] per channel), viewed as
              (1, C, 3, H, W), a·b + c + bias.

Threads: `torch.set_num_threads` (intra-op pool) before each thread count's rounds; timed under
`torch.inference_mode()`. x: (1, C, H, H) fp32; weights wa, wb, wc (C, 1, k, k), bias (C,).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgedet.errors import EdgedetError
from edgedet.kernels import quadratic_conv2d, torch_extension
from edgedet.kernels.quadratic import stack_weights

RUNTIME = "torch"


class TorchRunner:
    """One variant bound to its tensors: `infer()` runs it, `output()` returns y as numpy."""

    def __init__(self, fn: Callable[[], torch.Tensor]):
        self._fn = fn

    def infer(self) -> None:
        self._fn()

    def output(self) -> np.ndarray:
        with torch.inference_mode():
            return self._fn().numpy()


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def _fused_op() -> None:
    """Build (or load) edgedet's CPU op so `quadratic_conv2d` dispatches to it; a clear error if not."""
    try:
        torch_extension.load()
    except EdgedetError:
        raise
    except Exception as e:  # a compiler error from cpp_extension
        raise EdgedetError(f"edgedet's PyTorch CPU op could not be built: {str(e).splitlines()[0]}") from None
    if torch_extension.available() is None:
        raise EdgedetError("edgedet's PyTorch CPU op is off (EDGEDET_TORCH_OP=0): the fused torch rows need it")


def variants(c: int, h: int, k: int, weights: list[np.ndarray], x: np.ndarray) -> dict[str, TorchRunner]:
    """name → runner of the three variants for one layer shape."""
    _fused_op()
    pad = (k - 1) // 2
    xt = torch.from_numpy(x)
    wa, wb, wc, bias = (torch.from_numpy(w) for w in weights)
    b4 = bias.view(1, c, 1, 1)
    w3 = stack_weights(wa, wb, wc).contiguous()

    def fused() -> torch.Tensor:
        return quadratic_conv2d(xt, wa, wb, wc, bias, padding=pad)

    def decomposed() -> torch.Tensor:
        a = F.conv2d(xt, wa, None, 1, pad, 1, c)
        b = F.conv2d(xt, wb, None, 1, pad, 1, c)
        lin = F.conv2d(xt, wc, None, 1, pad, 1, c)
        return a * b + lin + b4

    def grouped() -> torch.Tensor:
        y3 = F.conv2d(xt, w3, None, 1, pad, 1, c).view(1, c, 3, h, h)
        return y3[:, :, 0] * y3[:, :, 1] + y3[:, :, 2] + b4

    return {"fused": TorchRunner(fused), "decomposed": TorchRunner(decomposed), "grouped": TorchRunner(grouped)}
