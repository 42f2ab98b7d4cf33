"""Latency statistics of one measured run: order statistics, spread and throughput."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default interpolation between order statistics


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference latency summary in milliseconds; `std` is the sample standard deviation."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float

    @property
    def cov(self) -> float:
        """Coefficient of variation std/mean: how noisy the run was (0.02 is calm, 0.2 is not)."""
        return self.std / self.mean if self.mean > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(latencies_ms: list[float] | np.ndarray) -> LatencyStats:
    """Summary statistics of a non-empty list of per-inference latencies (ms)."""
    x = np.asarray(latencies_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no latencies to summarise")
    p = np.percentile(x, [50, 90, 95, 99], method=PERCENTILE_METHOD)
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return LatencyStats(
        min=float(x.min()),
        mean=float(x.mean()),
        median=float(p[0]),
        p90=float(p[1]),
        p95=float(p[2]),
        p99=float(p[3]),
        max=float(x.max()),
        std=std,
    )


def throughput_items_per_s(batch: int, iterations: int, wall_s: float) -> float:
    """Items per second over a measured phase of `iterations` sequential inferences of `batch` items."""
    return batch * iterations / wall_s if wall_s > 0 else 0.0
