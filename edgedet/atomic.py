"""Re-export of `edgedet.io.atomic` for callers not yet moved (bench/ suites)."""

from edgedet.io.atomic import atomic_output, write_json_atomic

__all__ = ["atomic_output", "write_json_atomic"]
