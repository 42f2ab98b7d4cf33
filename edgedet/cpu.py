"""This CPU: its model name and the vector ISA that kernels (oneDNN, OpenVINO, TVM) can use.

The ISA is recorded in every bench/profile JSON, because fp32 summation order, bf16 support
and speed all depend on it. Two environment variables cap what edgedet reports, so a suite
can run here as if on a smaller CPU:
- `EDGEDET_FORCE_ISA=avx2` (or sse41, avx, avx512f, avx512_bf16, amx): edgedet's own cap;
- `ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA` (oneDNN's names, e.g. AVX2, AVX512_CORE): the cap
  oneDNN applies inside PyTorch and OpenVINO; edgedet honours it the same way.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from edgedet.errors import EdgedetError

# x86 levels, lowest first; a cap keeps the features at or below its level.
X86_LEVELS = ("sse41", "avx", "avx2", "avx512f", "avx512_bf16", "amx")
_X86_FLAGS = {  # /proc/cpuinfo flag → level it unlocks
    "sse4_1": "sse41",
    "avx": "avx",
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx",
}
_ONEDNN_LEVELS = {  # oneDNN's ONEDNN_MAX_CPU_ISA values → our level
    "SSE41": "sse41",
    "AVX": "avx",
    "AVX2": "avx2",
    "AVX2_VNNI": "avx2",
    "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512f",
    "AVX512_CORE_VNNI": "avx512f",
    "AVX512_CORE_BF16": "avx512_bf16",
    "AVX512_CORE_FP16": "avx512_bf16",
    "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx",
}
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "bf16": "arm_bf16", "i8mm": "i8mm", "sve": "sve"}


def _cpuinfo_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's marketing name (x86 'model name', Arm 'Hardware'/'CPU model'), else the arch."""
    for line in _cpuinfo_lines():
        key = line.split(":")[0].strip().lower()
        if key in ("model name", "hardware", "cpu model"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _raw_flags() -> set[str]:
    for line in _cpuinfo_lines():
        key = line.split(":")[0].strip().lower()
        if key in ("flags", "features"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_flags() -> set[str]:
    """The CPU's raw /proc/cpuinfo flags (x86 'flags', Arm 'Features'); empty if unreadable."""
    return _raw_flags()


@dataclass(frozen=True)
class VectorIsa:
    """Vector features in edgedet's vocabulary (avx2, avx512f, avx512_bf16, amx, neon, …)."""

    arch: str
    features: tuple[str, ...]  # after any cap
    detected: tuple[str, ...]  # what the CPU reports
    cap: str | None = None  # the active cap, e.g. "ONEDNN_MAX_CPU_ISA=AVX2"

    @property
    def best(self) -> str:
        """The one-word label: the highest level present (x86) or neon[+dotprod] (Arm)."""
        if self.arch in ("x86_64", "amd64", "i686"):
            present = [lv for lv in X86_LEVELS if lv in self.features]
            return present[-1] if present else "scalar"
        if "neon" in self.features:
            return "neon+dotprod" if "dotprod" in self.features else "neon"
        return "scalar"

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic (x86 AVX512_BF16 / AMX, Arm BF16)."""
        return any(f in self.features for f in ("avx512_bf16", "amx", "arm_bf16"))

    def to_json(self) -> dict:
        return {
            "arch": self.arch,
            "best": self.best,
            "features": list(self.features),
            "detected": list(self.detected),
            "cap": self.cap,
        }


def isa_cap() -> tuple[str, str] | None:
    """(level, 'VAR=value') of the active cap, or None; an unknown value is an error."""
    forced = os.environ.get("EDGEDET_FORCE_ISA", "").strip().lower()
    if forced:
        if forced not in X86_LEVELS:
            raise EdgedetError(f"EDGEDET_FORCE_ISA={forced}: choose from {', '.join(X86_LEVELS)}")
        return forced, f"EDGEDET_FORCE_ISA={forced}"
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(var, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            level = _ONEDNN_LEVELS.get(value)
            if level is None:
                raise EdgedetError(f"{var}={value}: not a oneDNN ISA name edgedet knows")
            return level, f"{var}={value}"
    return None


def vector_isa() -> VectorIsa:
    """This CPU's vector ISA, capped as the environment says."""
    arch = platform.machine().lower()
    flags = _raw_flags()
    if arch in ("x86_64", "amd64", "i686"):
        detected = tuple(lv for lv in X86_LEVELS if any(_X86_FLAGS[f] == lv for f in flags & _X86_FLAGS.keys()))
        cap = isa_cap()
        if cap is None:
            return VectorIsa(arch, detected, detected)
        limit = X86_LEVELS.index(cap[0])
        kept = tuple(f for f in detected if X86_LEVELS.index(f) <= limit)
        return VectorIsa(arch, kept, detected, cap[1])
    detected = tuple(sorted(_ARM_FLAGS[f] for f in flags & _ARM_FLAGS.keys()))
    return VectorIsa(arch, detected, detected)
