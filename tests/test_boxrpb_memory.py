"""The fused BoxRPB attention writes no (K, H·W) tensor: its memory beyond the inputs grows as
K·(H+W) (and H·W for k, v), while the PyTorch form's grows as K·H·W (`reproduce kernels`)."""

from __future__ import annotations

import importlib.util

import pytest

from edgedet.bench.reproduce.kernels_cmd import boxrpb_memory


# find_spec, not importorskip: importing triton here, before test_export_tensorrt sets
# TRITON_INTERPRET, would leave every later Triton test of the session without its interpreter
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_fused_boxrpb_memory_has_no_khw_term():
    doc = boxrpb_memory(quick=True)  # child process, TRITON_INTERPRET=1 where there is no GPU
    fit = doc["fit"]
    assert doc["growth"] == {"fused": "K*(H+W)", "torch": "K*H*W"}
    # the PyTorch form keeps ≥ 1 fp32 logits tensor per head (4 heads × 4 bytes) per K·H·W
    assert fit["attention_torch"]["coef_bytes"]["KHW"] >= 16.0
    for phase in ("bias", "attention_fused"):
        assert fit[phase]["coef_bytes"]["KHW"] < 1e-3 and fit[phase]["max_rel_residual"] < 0.05
    assert len(doc["rows"]) == 8 and all(set(r["peak_bytes"]) == {"bias", "attention_fused", "attention_torch"}
                                         for r in doc["rows"])
