"""TVM compile targets with the CPU's real vector features, and the check that a library's
features exist on the CPU that loads it.

`host` is built from this CPU's /proc/cpuinfo flags (edgedet.cpu): an x86-64 micro-architecture
level as `-mcpu` (x86-64-v3 for AVX2+FMA, x86-64-v4 for AVX-512) plus the exact `-mattr` list,
so the code runs on any CPU with the same flags. `cortex-a76` is cross-compiled for AArch64
with NEON and the dot-product extension. `host-generic` is the featureless build (baseline
x86-64 / SSE2), kept to measure what the features buy. Each target lists the cpuinfo flags
the library needs (`requires_cpu_flags` in the manifest); `check_cpu_flags` refuses a library
whose flags the running CPU lacks with one line instead of an illegal-instruction crash.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from edgedet.cpu import cpu_flags
from edgedet.errors import EdgedetError

CROSS_GCC = "aarch64-linux-gnu-gcc"

# cpuinfo flag → LLVM attribute, lowest level first (only flags LLVM vectorises with).
_X86_ATTRS = (
    ("sse4_1", "+sse4.1"),
    ("sse4_2", "+sse4.2"),
    ("avx", "+avx"),
    ("f16c", "+f16c"),
    ("fma", "+fma"),
    ("avx2", "+avx2"),
    ("avx512f", "+avx512f"),
    ("avx512bw", "+avx512bw"),
    ("avx512dq", "+avx512dq"),
    ("avx512vl", "+avx512vl"),
    ("avx512_vnni", "+avx512vnni"),
    ("avx512_bf16", "+avx512bf16"),
)
_V3 = {"avx", "avx2", "fma", "f16c"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


@dataclass(frozen=True)
class TvmTarget:
    """A named compile target: TVM target (JSON-dict form), the C compiler that links it, and
    the cpuinfo flags a CPU needs to run the library."""

    name: str
    target: dict
    compiler: str | None  # None: TVM's default host compiler
    elf_machine: str  # "x86_64" / "aarch64" as in `file`/ELF e_machine; "host": this machine
    requires_cpu_flags: tuple[str, ...] = field(default=())
    vector_width_bits: int = 128

    @property
    def fp32_lanes(self) -> int:
        """fp32 elements per vector register (at least 4), the lane count schedules split by."""
        return max(4, self.vector_width_bits // 32)

    def description(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.target.items())

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "tvm_target": self.target,
            "requires_cpu_flags": list(self.requires_cpu_flags),
            "vector_width_bits": self.vector_width_bits,
        }


def x86_host_target(flags: set[str], threads: int = 1) -> TvmTarget:
    """The x86-64 target for a CPU with cpuinfo `flags`: mcpu level + exact mattr."""
    have = [(f, a) for f, a in _X86_ATTRS if f in flags]
    names = {f for f, _ in have}
    mcpu = "x86-64-v4" if _V4 <= names else ("x86-64-v3" if _V3 <= names else "x86-64")
    width = 512 if "avx512f" in names else (256 if "avx" in names else 128)
    target = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "mattr": [a for _, a in have],
              "num-cores": threads}
    return TvmTarget("host", target, None, "host", tuple(f for f, _ in have), width)


def aarch64_host_target(flags: set[str], threads: int = 1) -> TvmTarget:
    attrs = [("asimd", "+neon"), ("asimddp", "+dotprod"), ("fphp", "+fullfp16"), ("i8mm", "+i8mm")]
    have = [(f, a) for f, a in attrs if f in flags]
    target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "generic",
              "mattr": [a for _, a in have], "num-cores": threads}
    return TvmTarget("host", target, None, "host", tuple(f for f, _ in have), 128)


def host_target(threads: int = 1) -> TvmTarget:
    """This machine's target from its cpuinfo flags."""
    flags = cpu_flags()
    if platform.machine().lower() in ("aarch64", "arm64"):
        return aarch64_host_target(flags, threads)
    return x86_host_target(flags, threads)


HOST_GENERIC = TvmTarget("host-generic", {"kind": "llvm"}, None, "host", (), 128)
CORTEX_A76 = TvmTarget(
    "cortex-a76",
    {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": "cortex-a76",
        "mattr": ["+neon", "+dotprod", "+fullfp16"],
        "num-cores": 4,
    },
    CROSS_GCC,
    "aarch64",
    ("asimd", "asimddp", "fphp"),
    128,
)
TARGET_NAMES = ("host", "host-generic", "cortex-a76")


def get_target(name: str, threads: int = 1) -> TvmTarget:
    """`host` (this CPU's features), `host-generic` (no features) or `cortex-a76`."""
    if name == "host":
        return host_target(threads)
    if name == "host-generic":
        return HOST_GENERIC
    if name == "cortex-a76":
        return CORTEX_A76
    raise EdgedetError(f"unknown TVM target '{name}' (choose {', '.join(TARGET_NAMES)})")


def missing_cpu_flags(required: list[str] | tuple[str, ...], flags: set[str] | None = None) -> list[str]:
    """The required cpuinfo flags this CPU (or `flags`) lacks."""
    have = cpu_flags() if flags is None else flags
    return [f for f in required if f not in have]


def check_cpu_flags(runtime_info: dict, what: str) -> None:
    """Refuse (one line) a library whose manifest `runtime.requires_cpu_flags` this CPU lacks."""
    required = runtime_info.get("requires_cpu_flags") or []
    lacking = missing_cpu_flags(required)
    if lacking:
        built = runtime_info.get("target_name") or runtime_info.get("target")
        raise EdgedetError(
            f"{what} was compiled for CPU features this CPU lacks ({', '.join(lacking)}; built for {built}): "
            "re-export it here with -f tvm --target host"
        )
