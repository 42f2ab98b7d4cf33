"""edgedet's fused quadratic conv as one TVM compute: the kernel (unscheduled, x86 tile, NEON
tile) against float64 PyTorch, and the TVM export using it on host and Cortex-A76."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from numerics import scaled_error

from edgedet import models
from edgedet.exporters.onnx import export_onnx
from edgedet.exporters.prepare import prepare
from edgedet.kernels.quadratic import quadratic_conv2d
from edgedet.kernels.tvm_quadconv import QuadConvSpec, Tile, quadconv_func, scheduled_quadconv, spec_of

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")
from edgedet.exporters import tvm as tx  # noqa: E402  (needs tvm)

SPECS = [QuadConvSpec(1, 3, 5, 5, 3, 1, 1, 1), QuadConvSpec(2, 4, 9, 11, 7, 1, 3, 1),
         QuadConvSpec(1, 2, 10, 10, 5, 2, 2, 1), QuadConvSpec(1, 2, 12, 12, 3, 1, 2, 2)]


def _run(func, spec: QuadConvSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(spec.n, spec.c, spec.h, spec.w)).astype(np.float32)
    ws = [rng.normal(0, 1 / spec.k, size=(spec.c, 1, spec.k, spec.k)).astype(np.float32) for _ in range(3)]
    b = rng.normal(size=spec.c).astype(np.float32)
    t = [torch.from_numpy(a).double() for a in (x, *ws, b)]
    ref = quadratic_conv2d(*t, stride=spec.stride, padding=spec.pad, dilation=spec.dilation,
                           memory_saving=False).numpy()
    lib = tvm.compile(tvm.IRModule({"main": func}), target=tx.get_target("host").target).mod
    args = [tvm.runtime.tensor(a) for a in (x, *ws, b)] + [tvm.runtime.tensor(np.zeros(spec.out_shape, np.float32))]
    lib["main"](*args)
    return args[-1].numpy(), ref


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.encode())
@pytest.mark.parametrize("tile", [None, Tile(8), Tile(4)], ids=["plain", "x86-avx2", "neon"])
def test_fused_kernel_matches_float64(spec, tile):
    func = quadconv_func(spec) if tile is None else scheduled_quadconv(spec, tile)
    assert spec_of(func) == spec
    out, ref = _run(func, spec)
    assert out.shape == ref.shape and scaled_error(out, ref) <= 1e-4


def test_scheduled_kernel_reads_each_tap_once_into_three_accumulators():
    text = scheduled_quadconv(QuadConvSpec(1, 4, 8, 8, 3, 1, 1, 1), Tile(8)).script()
    assert text.count("T.vectorized") >= 2 and "T.parallel" in text
    # one reduction block whose body updates three local accumulators from one padded-input read
    assert text.count('T.sblock("acc_update")') == 1 and text.count('scope="local"') == 3


@pytest.fixture(scope="module")
def xxs():
    torch.manual_seed(0)
    net = models.create("quadranet25-xxs").eval()
    form = prepare(net, 32)
    x = form.example(1, seed=3)[0]
    with torch.no_grad():
        ref = net.double()(x.double()).numpy()
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    return ex, x.numpy(), ref


def test_tvm_export_runs_quadconv_fused_and_decomposed_on_request(xxs, tmp_path):
    ex, x, ref = xxs
    fused = tx.build_library(ex.model, tx.get_target("host"), tmp_path / "f.so")
    ops = fused.to_json()["fused_ops"]["edgedet.QuadraConv"]
    assert ops["nodes"] == 25 and ops["schedule"].startswith("edgedet.quadconv")
    assert list(fused.schedules.applied.values()).count("edgedet.quadconv") > 0
    assert scaled_error(tx.run_library(tmp_path / "f.so", [x])[0], ref) <= 1e-4
    plain = tx.build_library(ex.model, tx.get_target("host"), tmp_path / "d.so", fused=False)
    assert "edgedet.quadconv" not in plain.schedules.applied.values()
    assert "inlined" in plain.to_json()["fused_ops"]["edgedet.QuadraConv"]["kernel"]
    assert scaled_error(tx.run_library(tmp_path / "d.so", [x])[0], ref) <= 1e-4


def test_cortex_a76_library_with_fused_quadconv_is_aarch64(xxs, tmp_path):
    ex, _, _ = xxs
    assert shutil.which(tx.CROSS_GCC), "aarch64-linux-gnu-gcc missing: run `make sysdeps`"
    rep = tx.build_library(ex.model, tx.get_target("cortex-a76"), tmp_path / "a.so")
    assert tx.elf_info(tmp_path / "a.so") == {"elf": True, "class": 64, "shared_object": True, "machine": "aarch64"}
    assert "4 fp32 lanes" in rep.to_json()["fused_ops"]["edgedet.QuadraConv"]["schedule"]
    assert rep.target.target["mcpu"] == "cortex-a76"
