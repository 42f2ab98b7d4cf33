"""edgedet.kernels: the quadratic depthwise convolution (and, later, BoxRPB attention) as
reference ops, memory-saving autograd and fused kernels."""

from edgedet.kernels.quadratic import QuadraConv2d, quadratic_conv2d

__all__ = ["QuadraConv2d", "quadratic_conv2d"]
