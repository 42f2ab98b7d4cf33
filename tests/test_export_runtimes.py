"""OpenVINO (ConversionExtension, explicit precision) and TVM (host build, loopback RPC,
Cortex-A76 cross-compile) on a small QuadraNet export, against PyTorch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from numerics import scaled_error

from edgedet import models
from edgedet.cpu import vector_isa
from edgedet.errors import EdgedetError
from edgedet.exporters import openvino as ovx
from edgedet.exporters import tvm as tx
from edgedet.exporters.onnx import export_onnx
from edgedet.exporters.prepare import prepare

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    net = models.create("quadranet25-xxs").eval()
    form = prepare(net, 64)
    x = form.example(1, seed=5)[0]
    with torch.no_grad():
        ref = net(x).numpy()
    return form, x.numpy(), ref


def test_openvino_extension_fp32_and_explicit_low_precision(case, tmp_path):
    """fp32 matches PyTorch; bf16 / fp16 run (and visibly differ) where this CPU's plugin has them,
    and are refused in one line where it lacks them (or an ISA cap hides them)."""
    import openvino as ov

    form, x, ref = case
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    ov_model = ovx.convert(ex.serialize(), use_extensions=True)
    ops = {o.get_type_name() for o in ov_model.get_ops()}
    assert "GroupConvolution" in ops  # QuadraConv lowered by the extension
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    isa = vector_isa()
    offered = {"bf16": "BF16" in caps and (isa.bf16 or not isa.cap), "fp16": "FP16" in caps}
    errors = {}
    for precision in ("fp32", "bf16", "fp16"):
        xml = tmp_path / precision / "model.xml"
        xml.parent.mkdir()
        ovx.save_ir(ov_model, xml, precision)
        assert (xml.with_suffix(".bin")).stat().st_size > 0
        if precision != "fp32" and not offered[precision]:
            with pytest.raises(EdgedetError, match=f"no {precision.upper()} support .*use --precision fp32"):
                ovx.compile_ir(xml, precision)
            continue
        compiled = ovx.compile_ir(xml, precision)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        assert hint.get_type_name() == ovx.PRECISION_HINTS[precision]
        errors[precision] = scaled_error(ovx.run_compiled(compiled, {"image": x})[0], ref)
    assert errors["fp32"] < 1e-4
    for low in set(errors) - {"fp32"}:
        assert errors[low] > errors["fp32"]  # the reduced precision is visible, not silently accepted


def test_openvino_inlined_route_matches(case, tmp_path):
    form, x, ref = case
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    ov_model = ovx.convert(ex.serialize(), use_extensions=False)
    ovx.save_ir(ov_model, tmp_path / "model.xml", "fp32")
    compiled = ovx.compile_ir(tmp_path / "model.xml", "fp32")
    assert np.abs(ovx.run_compiled(compiled, {"image": x})[0] - ref).max() < 1e-4


@pytest.fixture(scope="module")
def host_lib(case, tmp_path_factory):
    form, _, _ = case
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"], decompose=True)
    path = tmp_path_factory.mktemp("tvm") / "model.so"
    tx.build_library(ex.model, tx.TARGETS["host"], path)
    return ex, path


def test_tvm_host_build_runs_locally_and_over_loopback_rpc(case, host_lib):
    _, x, ref = case
    _, path = host_lib
    assert tx.elf_info(path)["shared_object"]
    local = tx.run_library(path, [x])[0]
    assert np.abs(local - ref).max() < 1e-4
    with tx.loopback_rpc_server() as session:
        remote = tx.run_remote(session, path, [x])[0]
    assert np.abs(remote - ref).max() < 1e-4


def test_tvm_cortex_a76_cross_compile_is_aarch64_shared_object(host_lib, tmp_path):
    ex, _ = host_lib
    assert shutil.which(tx.CROSS_GCC), "aarch64-linux-gnu-gcc missing: run `make sysdeps`"
    out = tmp_path / "model.so"
    tx.build_library(ex.model, tx.TARGETS["cortex-a76"], out)
    info = tx.elf_info(out)
    # cannot run here (x86_64 host): checked to be a 64-bit aarch64 ELF shared object
    assert info == {"elf": True, "class": 64, "shared_object": True, "machine": "aarch64"}


def test_tvm_inlines_local_functions_but_fuses_quadraconv(case, tmp_path):
    form, x, ref = case
    ex = export_onnx(form.module, form.example(), ["image"], ["logits"])
    report = tx.build_library(ex.model, tx.TARGETS["host"], tmp_path / "m.so")
    assert report.imported.fused == {"edgedet.QuadraConv": 25}
    assert np.abs(tx.run_library(tmp_path / "m.so", [x])[0] - ref).max() < 1e-4
