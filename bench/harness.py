"""The timing loop every runtime shares: first inference apart, a time-based warm-up, then a
measured phase that ends only when both the minimum duration and iteration count are met.

A runtime session times its own inferences (`run_timed(n)` → n latencies in ms): host
runtimes with `perf_counter_ns` around a synchronous call, GPU runtimes with CUDA events
after a synchronise, remote boards with TVM's on-device time evaluator. The loop only decides
how many to run and collects them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class TimedSession(Protocol):
    def run_timed(self, n: int) -> list[float]:
        """Run n sequential inferences on the bound inputs; return each one's latency (ms)."""
        ...


@dataclass(frozen=True)
class LoopConfig:
    warmup_s: float = 2.0
    duration_s: float = 10.0
    min_iters: int = 50
    chunk: int = 1  # inferences per run_timed call (large for remote boards, where a call costs a round trip)


@dataclass
class LoopResult:
    first_inference_ms: float
    warmup_iters: int
    warmup_s: float
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def time_loop(session: TimedSession, cfg: LoopConfig) -> LoopResult:
    """First inference, warm-up for `warmup_s` of wall time, then the measured phase."""
    t0 = time.perf_counter()
    first = session.run_timed(1)[0]
    first_wall_ms = (time.perf_counter() - t0) * 1e3
    # A host-timed first run equals its wall time; a device-timed one may hide transfer set-up.
    first_ms = max(first, first_wall_ms) if cfg.chunk == 1 else first

    warm_iters, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < cfg.warmup_s:
        warm_iters += len(session.run_timed(cfg.chunk))
    warm_s = time.perf_counter() - t0

    lat: list[float] = []
    t0 = time.perf_counter()
    while True:
        lat.extend(session.run_timed(cfg.chunk))
        wall = time.perf_counter() - t0
        if wall >= cfg.duration_s and len(lat) >= cfg.min_iters:
            break
    return LoopResult(
        first_inference_ms=first_ms, warmup_iters=warm_iters, warmup_s=warm_s, latencies_ms=lat, wall_s=wall
    )
