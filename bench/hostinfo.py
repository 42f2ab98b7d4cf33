"""This machine: a fingerprint for every report (CPU model, vector ISA, cores, GPU, OS, load) and its
measured physical limits per thread count — peak FP32 GEMM FLOP/s and stream-copy memory
bandwidth — that roofline bounds compare against."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass

from edgedet.cpu import cpu_model, vector_isa

HOSTINFO_SCHEMA_VERSION = 2  # 2: device.isa


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpus() -> list[dict]:
    """NVIDIA GPUs as nvidia-smi names them (empty when there is none or no driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            rows.append({"name": parts[0], "memory_mib": float(parts[1]), "driver": parts[2]})
    return rows


def fingerprint() -> dict:
    """What a reader needs to know about the machine a number was measured on."""
    import psutil

    freq = psutil.cpu_freq()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu_model(),
        "isa": vector_isa().to_json(),
        "machine": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": usable_cpus(),
        "cpu_max_mhz": round(freq.max, 1) if freq and freq.max else None,
        "memory_total_mib": round(psutil.virtual_memory().total / 2**20),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_1m": round(load[0], 2) if load else None,
    }


@dataclass
class Peak:
    threads: int
    gemm_gflops: float  # best FP32 GEMM rate, 1 multiply-add = 2 FLOPs
    copy_gbps: float  # best copy rate counting the bytes read plus the bytes written (GB = 1e9 B)


def measure_peak(threads: int, seconds: float = 1.0, gemm_n: int = 1024, copy_mib: int = 256) -> Peak:
    """Best-of-repeats GEMM and copy rates with torch limited to `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(gemm_n, gemm_n), torch.randn(gemm_n, gemm_n)
    c = torch.empty(gemm_n, gemm_n)
    torch.mm(a, b, out=c)
    best, t_end = 0.0, time.perf_counter() + seconds / 2
    while True:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = max(best, 2 * gemm_n**3 / (time.perf_counter() - t0))
        if time.perf_counter() > t_end:
            break
    n = copy_mib * 2**20 // 4
    src, dst = torch.ones(n), torch.empty(n)
    dst.copy_(src)
    bw, t_end = 0.0, time.perf_counter() + seconds / 2
    while True:
        t0 = time.perf_counter()
        dst.copy_(src)
        bw = max(bw, 2 * n * 4 / (time.perf_counter() - t0))
        if time.perf_counter() > t_end:
            break
    return Peak(threads=threads, gemm_gflops=best / 1e9, copy_gbps=bw / 1e9)


def measure(threads: list[int] | None = None, seconds: float = 1.0) -> dict:
    """The hostinfo JSON: fingerprint + peaks for each thread count (default 1..usable CPUs)."""
    import torch

    counts = threads or list(range(1, usable_cpus() + 1))
    peaks = [asdict(measure_peak(t, seconds)) for t in counts]
    return {
        "schema_version": HOSTINFO_SCHEMA_VERSION,
        "device": fingerprint(),
        "method": {
            "gemm": "torch.mm FP32 square GEMM, best of repeats, 2·n³ FLOPs",
            "copy": "torch Tensor.copy_ of a large FP32 array (much larger than caches), best of repeats, "
            "bytes read + bytes written",
            "torch": torch.__version__,
            "seconds_per_thread_count": seconds,
        },
        "peaks": peaks,
    }


def peak_for(hostinfo: dict, threads: int) -> dict | None:
    """The measured peak at `threads` (or the nearest count measured)."""
    peaks = hostinfo.get("peaks") or []
    if not peaks:
        return None
    return min(peaks, key=lambda p: abs(p["threads"] - threads))
