"""One precision vocabulary for every verb and JSON field.

Users may write `fp32` or `f32`, `fp16` or `f16`, `bf16`, `int8`; edgedet prints and stores
one canonical spelling (`fp32`, `fp16`, `bf16`, `int8`). `int8` is reserved for
post-training quantisation: a verb that cannot produce it says so in one line.
Runtime-specific names (OpenVINO's `f32`, torch dtypes) are derived here, in one place.
"""

from __future__ import annotations

from edgedet.errors import EdgedetError

CANONICAL = ("fp32", "fp16", "bf16", "int8")
_ALIASES = {
    "fp32": "fp32",
    "f32": "fp32",
    "float32": "fp32",
    "fp16": "fp16",
    "f16": "fp16",
    "float16": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "int8": "int8",
    "i8": "int8",
}
ACCEPTED = "fp32|f32, fp16|f16, bf16, int8"
HELP = "fp32 (or f32) | fp16 (or f16) | bf16 | int8 (quantised; where offered)"

# canonical → OpenVINO INFERENCE_PRECISION_HINT / optimisation capability
OPENVINO_HINT = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
OPENVINO_CAPABILITY = {"fp16": "FP16", "bf16": "BF16"}
TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def canonical(value: str, allowed: tuple[str, ...] = CANONICAL, what: str = "--precision") -> str:
    """The canonical spelling of `value`; one clear error listing the accepted values otherwise.

    `allowed` narrows the canonical set for a verb or runtime (e.g. ("fp32",) for ONNX Runtime)."""
    name = _ALIASES.get(str(value).strip().lower())
    if name is None:
        raise EdgedetError(f"unknown {what} '{value}'; accepted: {ACCEPTED}")
    if name not in allowed:
        raise EdgedetError(f"{what} {name} is not offered here; choose from {', '.join(allowed)}")
    return name


def check_openvino_cpu(precision: str, plugin_capabilities: list[str], isa) -> str:
    """The OpenVINO CPU INFERENCE_PRECISION_HINT for canonical `precision`, or one clear error
    when this CPU's plugin lacks it. `isa` (edgedet.cpu.VectorIsa) applies an ISA cap: under
    EDGEDET_FORCE_ISA=avx2 a bf16-capable CPU is treated as the AVX2 CPU it stands in for."""
    hint = OPENVINO_HINT.get(precision)
    if hint is None:
        raise EdgedetError(f"OpenVINO CPU inference precision {precision} is not offered; choose fp32, fp16, bf16")
    need = OPENVINO_CAPABILITY.get(precision)
    caps = list(plugin_capabilities)
    if need == "BF16" and isa.cap and not isa.bf16:
        caps = [c for c in caps if c != "BF16"]
    if need and need not in caps:
        capped = f"; ISA capped by {isa.cap}" if isa.cap else ""
        raise EdgedetError(
            f"this CPU's OpenVINO plugin has no {need} support (capabilities: {', '.join(caps)}{capped}); "
            f"use --precision fp32"
        )
    return hint
