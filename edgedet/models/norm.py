"""Re-export of `edgedet.models.layers.LayerNorm2d` for callers not yet moved (bench/ suites)."""

from edgedet.models.layers.norm import LayerNorm2d

__all__ = ["LayerNorm2d"]
