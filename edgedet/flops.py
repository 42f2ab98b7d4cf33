"""FLOPs of the compute-bound layers: the one convention every counter in edgedet uses
(`edgedet models` / `models.complexity`, the latency predictor's kernels, bench's roofline).

One multiply-accumulate = 2 FLOPs; bias adds and element-wise work are not counted here.
Shapes are plain integer sequences (NCHW activations; conv weights [O, I/groups, k…])."""

from __future__ import annotations

import math
from collections.abc import Sequence

Shape = Sequence[int]


def conv(out_shape: Shape, weight_shape: Shape) -> int:
    """A (grouped, depthwise) convolution: every output element is a dot product over
    weight[1:] (input channels per group × kernel window)."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


def conv_transpose(in_shape: Shape, weight_shape: Shape) -> int:
    """A transposed convolution (weights [I, O/groups, k…]): every input element is scattered
    through weight[1:]."""
    return 2 * math.prod(in_shape) * math.prod(weight_shape[1:])


def quadconv(out_shape: Shape, weight_shape: Shape) -> int:
    """The quadratic depthwise convolution y = (Wa⊛x)·(Wb⊛x) + Wc⊛x: three convolutions of
    one weight shape (the product and the sum are element-wise)."""
    return 3 * conv(out_shape, weight_shape)


def matmul(out_shape: Shape, k: int) -> int:
    """A (batched) matrix product or linear layer with reduction length `k`."""
    return 2 * math.prod(out_shape) * k
