"""The one timing loop every measurement shares (bench, host profiling, export reports): first
inference apart, a warm-up, then a measured phase that ends when both the minimum duration and
iteration count are met (or at an optional iteration cap).

A runtime session times its own inferences (`run_timed(n)` → n latencies in ms): host
runtimes with `perf_counter_ns` around a synchronous call, GPU runtimes with CUDA events
after a synchronise, remote boards with TVM's on-device time evaluator. The loop only decides
how many to run and collects them, with the process CPU time of each call beside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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
    warmup_min_iters: int = 0  # warm-up runs after the first inference, however short warmup_s is
    max_iters: int | None = None  # stop the measured phase here even before duration_s
    flush_mib: float = 0.0  # > 0: sweep this much memory before every call, outside the timed region


@dataclass
class LoopResult:
    first_inference_ms: float
    warmup_iters: int
    warmup_s: float
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_ms: list[float] = field(default_factory=list)  # process CPU time per inference, one per call / chunk


def time_loop(session: TimedSession, cfg: LoopConfig) -> LoopResult:
    """First inference, warm-up (`warmup_s` of wall time and `warmup_min_iters` runs), then the
    measured phase until `duration_s` and `min_iters` are both met, or `max_iters` is reached.

    `flush_mib` evicts the core's caches before every call (a single kernel inside a whole model
    does not find its weights and input there: other kernels have evicted them); the sweep is
    read-only, so it leaves no dirty lines to write back inside the timed region."""
    t0 = time.perf_counter()
    first = session.run_timed(1)[0]
    first_wall_ms = (time.perf_counter() - t0) * 1e3
    # A host-timed first run equals its wall time; a device-timed one may hide transfer set-up.
    first_ms = max(first, first_wall_ms) if cfg.chunk == 1 else first

    warm_iters, t0 = 0, time.perf_counter()
    while warm_iters < cfg.warmup_min_iters or time.perf_counter() - t0 < cfg.warmup_s:
        warm_iters += len(session.run_timed(cfg.chunk))
    warm_s = time.perf_counter() - t0

    sweep = np.zeros(int(cfg.flush_mib * 2**18), dtype=np.float32) if cfg.flush_mib > 0 else None
    lat: list[float] = []
    cpu: list[float] = []
    t0 = time.perf_counter()
    while True:
        if sweep is not None:
            sweep.sum()
        c0 = time.process_time()
        got = session.run_timed(cfg.chunk)
        cpu.append((time.process_time() - c0) * 1e3 / max(1, len(got)))
        lat.extend(got)
        wall = time.perf_counter() - t0
        if cfg.max_iters is not None and len(lat) >= cfg.max_iters:
            break
        if wall >= cfg.duration_s and len(lat) >= cfg.min_iters:
            break
    return LoopResult(
        first_inference_ms=first_ms, warmup_iters=warm_iters, warmup_s=warm_s, latencies_ms=lat, wall_s=wall,
        cpu_ms=cpu,
    )
