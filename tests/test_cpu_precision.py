"""The vector-ISA record (with its caps) and the one precision vocabulary."""

from __future__ import annotations

import pytest

from edgedet import precision
from edgedet.cpu import X86_LEVELS, VectorIsa, vector_isa
from edgedet.errors import EdgedetError


@pytest.mark.parametrize(
    "given,want",
    [("fp32", "fp32"), ("f32", "fp32"), ("FP16", "fp16"), ("f16", "fp16"), ("bf16", "bf16"), ("int8", "int8")],
)
def test_every_spelling_maps_to_one_canonical_name(given, want):
    assert precision.canonical(given) == want


def test_unknown_or_unoffered_precision_is_one_clear_line():
    with pytest.raises(EdgedetError, match=r"unknown --precision 'fp64'; accepted: fp32\|f32, fp16\|f16, bf16, int8"):
        precision.canonical("fp64")
    with pytest.raises(EdgedetError, match="int8 is not offered here; choose from fp32, fp16"):
        precision.canonical("int8", ("fp32", "fp16"))


def test_isa_caps_remove_the_levels_above_them(monkeypatch):
    monkeypatch.delenv("EDGEDET_FORCE_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    native = vector_isa()
    assert native.cap is None and native.features == native.detected
    if native.arch not in ("x86_64", "amd64"):
        pytest.skip("the caps name x86 ISA levels")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    capped = vector_isa()
    assert capped.features == tuple(f for f in native.detected if f == "sse41")
    assert capped.cap == "ONEDNN_MAX_CPU_ISA=SSE41" and not capped.bf16
    monkeypatch.setenv("EDGEDET_FORCE_ISA", "avx2")  # edgedet's own cap wins
    assert vector_isa().cap == "EDGEDET_FORCE_ISA=avx2"
    assert set(vector_isa().features) <= set(X86_LEVELS[: X86_LEVELS.index("avx2") + 1])
    monkeypatch.setenv("EDGEDET_FORCE_ISA", "avx9")
    with pytest.raises(EdgedetError, match="EDGEDET_FORCE_ISA=avx9: choose from"):
        vector_isa()


AVX512_BF16 = VectorIsa("x86_64", ("avx2", "avx512f", "avx512_bf16"), ("avx2", "avx512f", "avx512_bf16"))
CAPPED = VectorIsa("x86_64", ("avx2",), ("avx2", "avx512f", "avx512_bf16"), "EDGEDET_FORCE_ISA=avx2")
AVX2 = VectorIsa("x86_64", ("avx2",), ("avx2",))


def test_openvino_precision_check_on_both_kinds_of_cpu():
    """The rule both the exporter and bench apply to the plugin's OPTIMIZATION_CAPABILITIES."""
    with_bf16 = ["FP32", "BF16", "INT8", "BIN", "EXPORT_IMPORT"]
    without = ["FP32", "INT8", "BIN", "EXPORT_IMPORT"]
    assert precision.check_openvino_cpu("bf16", with_bf16, AVX512_BF16) == "bf16"
    assert precision.check_openvino_cpu("fp32", without, AVX2) == "f32"
    with pytest.raises(EdgedetError, match=r"no BF16 support \(capabilities: FP32, INT8, BIN, EXPORT_IMPORT\)"):
        precision.check_openvino_cpu("bf16", without, AVX2)
    with pytest.raises(EdgedetError, match="ISA capped by EDGEDET_FORCE_ISA=avx2"):
        precision.check_openvino_cpu("bf16", with_bf16, CAPPED)
    with pytest.raises(EdgedetError, match="no FP16 support"):
        precision.check_openvino_cpu("fp16", with_bf16, AVX512_BF16)
