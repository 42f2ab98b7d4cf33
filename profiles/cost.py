"""Per-kernel latency from a profile's predictor (pure functions of kernel features).

roofline (predicted profiles):
    t = overhead_us + (C^p + M^p)^(1/p),  C = compute_scale · FLOPs / peak,
                                           M = (memory_scale · bytes + spill_scale · spill) / bandwidth
    (spill: activation bytes of a tensor beyond the device's on-chip memory, `onchip_bytes`)
    (compute_scale, memory_scale = 1 / efficiency of the op class, fitted on whole models)
linear (measured profiles):
    t = s · max(min_us, Σ_f coef_f · feature_f) + o     fitted on single-kernel timings
    or  s · max(min_us, exp(Σ_f c_f · log(1 + feature_f))) + o  (a power law, `log_coef`)
    s = context_scale of the class, o = kernel_overhead_us (fitted on whole networks)
"""

from __future__ import annotations

import math

from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import Profile

FREE_CLASSES = frozenset({"identity"})  # Identity / Dropout: removed by every runtime


def features(k: Kernel) -> dict[str, float]:
    out = float(sum(math.prod(s) for s in k.output_shapes))
    inp = float(sum(math.prod(s) for s in k.input_shapes))
    moved = k.bytes_read + k.bytes_written
    return {
        "const": 1.0,
        "flops": k.flops,
        "bytes_read": k.bytes_read,
        "bytes_written": k.bytes_written,
        "weight_bytes": k.weight_bytes,
        "out_elems": out,
        "in_elems": inp,
        "flops_per_out": k.flops / out if out else 0.0,
        # traffic beyond what a per-core L2 (1 MiB) / a shared L3 (16 MiB) / a server's large
        # L3 or a VM's share of it (64 MiB) holds costs more
        "spill_bytes": max(0.0, moved - 2.0**20),
        "dram_bytes": max(0.0, moved - 2.0**24),
        "far_bytes": max(0.0, moved - 2.0**26),
    }


def spill_bytes(k: Kernel, onchip: float, elem_bytes: float) -> float:
    """Bytes of a kernel's activation tensors (fp elements, input + output) beyond the
    device's on-chip memory: what must stream from DRAM even in a fused schedule."""
    if onchip <= 0:
        return 0.0
    tensors = [*k.input_shapes[:1], *k.output_shapes]
    return float(sum(max(0.0, math.prod(t) * elem_bytes - onchip) for t in tensors))


def variant_key(k: Kernel, classes: dict) -> str:
    """Most specific predictor entry present: conv:k3s1 / conv:k3 / conv (kernel size, stride).
    Only square kernels with equal strides take a size variant: a 1×7 or 7×1 conv is not a
    7×7 (nor a 3×1 a Winograd 3×3) and is priced by the generic `conv` entry."""
    ks, st = tuple(k.kernel_size or ()), tuple(k.stride or (1,))
    square = len(set(ks)) == 1 and len(set(st)) == 1
    if k.op == "conv" and ks and k.groups == 1 and square:
        kh, sh = ks[0], st[0]
        for key in (f"conv:k{kh}s{sh}", f"conv:k{kh}"):
            if key in classes:
                return key
    if k.op == "linear" and k.input_shapes and len(k.input_shapes[0]) == 2 and "linear:fc" in classes:
        return "linear:fc"
    return k.op


def kernel_us(k: Kernel, profile: Profile) -> float | None:
    """Latency in µs, or None when the profile has no model for the kernel's class."""
    if k.op in FREE_CLASSES:
        return 0.0
    pred = profile.predictor
    spec = pred["classes"].get(variant_key(k, pred["classes"]))
    if spec is None:
        return None
    if pred["type"] == "roofline":
        hw = profile.hardware
        p = float(pred.get("combine_p", 1.0))
        out = max(1.0, float(sum(math.prod(s) for s in k.output_shapes)))
        c = (
            spec["compute_scale"]
            * k.flops
            / (hw["peak_gflops"] * 1e3)
            * (1.0 + spec.get("parallel_half", 0.0) / out)
        )
        moved = k.bytes_read + k.bytes_written
        spill = spill_bytes(k, float(hw.get("onchip_bytes", 0.0)), profile.element_bytes)
        m = (spec["memory_scale"] * moved + spec.get("spill_scale", 0.0) * spill) / (hw["bandwidth_gbs"] * 1e3)
        hi, lo = max(c, m), min(c, m)
        return spec["overhead_us"] + (hi * (1.0 + (lo / hi) ** p) ** (1.0 / p) if hi > 0 else 0.0)
    scale = float(pred.get("context_scale", {}).get(variant_key(k, pred["classes"]), 1.0))
    return scale * linear_us(spec, k) + float(pred.get("kernel_overhead_us", 0.0))


def linear_us(spec: dict, k: Kernel) -> float:
    """A measured class: linear in the features (`coef`) or a power law (`log_coef`)."""
    f = features(k)
    if "log_coef" in spec:
        z = sum(c * (1.0 if n == "const" else math.log1p(f[n])) for n, c in spec["log_coef"].items())
        t = math.exp(min(z, 50.0))
    else:
        t = sum(c * f[name] for name, c in spec["coef"].items())
    return max(float(spec.get("min_us", 0.0)), t)


def fixed_us(profile: Profile) -> float:
    """Per-inference cost outside the kernels (host↔device transfer, dispatch)."""
    return float(profile.predictor.get("fixed_us", 0.0))
