"""edgedet's OpenVINO CPU extension (fused edgedet.QuadraConv) on the real OpenVINO runtime:
parity against float64 PyTorch for several geometries, the export artifact that carries it,
bench loading it, and the one-line error without a compiler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedet.errors import EdgedetError
from edgedet.exporters import openvino as ovx
from edgedet.exporters.artifact import load_manifest
from edgedet.exporters.pipeline import ExportRequest, export_artifact
from edgedet.io.digest import sha256_file
from edgedet.kernels import openvino_extension
from edgedet.runtimes import SessionSpec
from edgedet.runtimes import openvino as ov_runtime

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def library():
    """Built once (≈ 15 s the first time, then from the cache)."""
    return openvino_extension.build().library


def _node_model(c, h, w, k, strides, pads, dilations, weights, batch=None):
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("QuadraConv", ["x", "wa", "wb", "wc", "bias"], ["y"], domain="edgedet",
                            strides=strides, pads=pads, dilations=dilations, group=c)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch or "n", c, h, w])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(a, n) for a, n in zip(weights, ["wa", "wb", "wc", "bias"], strict=True)]
    graph = helper.make_graph([node], "q", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgedet", 1)])
    return model.SerializeToString()


def _reference(x, weights, strides, pads, dilations):
    """float64 (Wa⊛x)(Wb⊛x) + Wc⊛x + b with explicit (top, left, bottom, right) zero padding."""
    xt = F.pad(torch.from_numpy(x).double(), (pads[1], pads[3], pads[0], pads[2]))
    wa, wb, wc, b = (torch.from_numpy(a).double() for a in weights)
    c = x.shape[1]

    def conv(w):
        return F.conv2d(xt, w, None, strides, 0, dilations, c)

    return (conv(wa) * conv(wb) + conv(wc) + b.view(1, -1, 1, 1)).numpy()


@pytest.mark.parametrize(
    "c,h,w,k,strides,pads,dilations",
    [
        (64, 56, 56, 7, [1, 1], [3, 3, 3, 3], [1, 1]),  # QuadraNet25-t stage 1
        (24, 7, 7, 7, [1, 1], [3, 3, 3, 3], [1, 1]),  # narrow rows: one vector per row, 7 (AVX-512VL) or 3 rows a tile
        (5, 13, 29, 3, [1, 1], [1, 1, 1, 1], [1, 1]),  # width not a multiple of 8
        (6, 17, 19, 5, [2, 2], [2, 2, 2, 2], [1, 1]),  # strided
        (3, 15, 21, 3, [1, 2], [0, 1, 2, 3], [2, 1]),  # asymmetric pads, mixed stride/dilation
        (35, 11, 6, 3, [1, 1], [0, 1, 2, 3], [2, 1]),  # small plane: 16-channel vectors, a 3-lane tail
        (21, 9, 8, 5, [2, 2], [2, 2, 2, 2], [1, 1]),  # small plane, strided
    ],
)
def test_fused_op_matches_float64_reference(library, tmp_path, c, h, w, k, strides, pads, dilations):
    rng = np.random.default_rng(c * h + k)
    weights = [rng.normal(0, 1 / k, (c, 1, k, k)).astype(np.float32) for _ in range(3)]
    weights.append(rng.normal(0, 0.5, c).astype(np.float32))
    ov_model = ovx.convert(_node_model(c, h, w, k, strides, pads, dilations, weights), fused=True)
    assert "QuadraConv" in [op.get_type_name() for op in ov_model.get_ordered_ops()]
    xml = tmp_path / "m.xml"
    ovx.save_ir(ov_model, xml, "fp32")
    assert openvino_extension.ir_needs_extension(xml)
    compiled = ovx.compile_ir(xml, "fp32", threads=2)  # a second thread exercises the row split
    for batch in (1, 2):
        x = rng.normal(0, 1, (batch, c, h, w)).astype(np.float32)
        ref = _reference(x, weights, strides, pads, dilations)
        got = ovx.run_compiled(compiled, {"x": x})[0]
        assert got.shape == ref.shape
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got - ref).max() <= 1e-5 * scale


def test_openvino_export_uses_the_extension_and_bench_loads_it(library, tmp_path):
    out = tmp_path / "art"
    res = export_artifact(ExportRequest(model="quadranet25-xxs", format="openvino", out=out, input_size=64,
                                        dynamic_batch=True))
    assert res.parity.passed and res.parity.max_abs_err <= 1e-4
    m = load_manifest(out)  # verifies every sha256, the library's included
    ext = m.data["runtime"]["extensions"]
    assert [e["ops"] for e in ext] == [list(openvino_extension.OPS)]
    assert ext[0]["sources_sha256"] == openvino_extension.sources_sha256()
    assert ext[0]["library"] in m.files and (out / ext[0]["library"]).is_file()
    assert m.files[ext[0]["library"]]["sha256"] == sha256_file(out / ext[0]["library"])
    assert "extension" in m.data["custom_ops_converted"]["edgedet.QuadraConv"]
    xml = (out / "model.xml").read_text()
    assert xml.count('type="QuadraConv"') == 25 and "GroupConvolution" not in xml

    session = ov_runtime.open(SessionSpec(runtime="openvino", model=str(out / "model.xml"), batch=2))
    assert session.info["extension"] == str(out / ext[0]["library"])  # the artifact's own copy
    session._infer()

    dec = tmp_path / "dec"
    export_artifact(ExportRequest(model="quadranet25-xxs", format="openvino", out=dec, input_size=64,
                                  decompose=True))
    d = json.loads((dec / "manifest.json").read_text())
    assert d["runtime"]["extensions"] == [] and sorted(d["files"]) == ["model.bin", "model.xml"]
    assert 'version="edgedet"' not in (dec / "model.xml").read_text()


def test_missing_compiler_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDET_OV_EXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(openvino_extension.shutil, "which", lambda name: None)
    with pytest.raises(EdgedetError, match=r"needs cmake and c\+\+ on PATH.*--decompose"):
        openvino_extension.build()
    assert not list((tmp_path / "cache").glob("*/*.so"))


def test_every_local_include_and_cmake_source_is_in_the_cache_key(tmp_path, monkeypatch):
    """A header the kernels include is hashed with them: editing it must change the key."""
    import re
    import shutil

    src = openvino_extension.source_dir()
    listed = set(openvino_extension.SOURCES)
    for name in listed - {"CMakeLists.txt"}:
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', (src / name).read_text(), flags=re.M):
            if (src / inc).is_file():  # a local header (the others come from the openvino wheel)
                assert inc in listed, f"{name} includes {inc}, which is not in SOURCES"
    cmake = (src / "CMakeLists.txt").read_text()
    built = re.search(r"add_library\(edgedet_ov_ext SHARED ([^)]*)\)", cmake).group(1).split()
    assert built and set(built) <= listed
    assert "ov_op_common.hpp" in listed

    for name in listed:
        shutil.copy(src / name, tmp_path / name)
    monkeypatch.setattr(openvino_extension, "source_dir", lambda: tmp_path)
    before = openvino_extension.sources_sha256()
    with open(tmp_path / "ov_op_common.hpp", "a") as f:
        f.write("// edited\n")
    assert openvino_extension.sources_sha256() != before


def test_reproduce_kernels_json(library, tmp_path):
    from edgedet.cli.main import main

    out = tmp_path / "k.json"
    args = ["--input-size", "32", "--no-model", "--no-train", "--rounds", "1", "--inner", "1", "--no-boxrpb",
            "--runtimes", "openvino", "--layer-threads", "1", "--json", str(out)]
    assert main(["reproduce", "kernels", *args]) == 0
    doc = json.loads(out.read_text())
    rows = doc["quadconv"]
    assert [r["shape"] for r in rows] == [[1, 64, 8, 8], [1, 128, 4, 4], [1, 256, 2, 2], [1, 512, 1, 1]]
    for r in rows:
        assert set(r["latency_ms"]) == {"fused", "decomposed", "grouped"} and r["kernel"] == 7
        assert max(r["max_abs_err"].values()) <= 1e-5 * max(1.0, r["max_abs_ref"])
        assert r["bytes"]["fused"] < r["bytes"]["grouped"] < r["bytes"]["decomposed"]
        assert r["speedup"] == pytest.approx(r["latency_ms"][r["best_decomposed"]] / r["latency_ms"]["fused"])
        assert r["runtime"] == "openvino" and r["threads"] == 1 and r["roofline"]["peak"]["threads"] == 1
        assert 0 < r["roofline"]["fraction"]["fused"] == pytest.approx(r["roofline"]["bound_ms"]["fused"]
                                                                       / r["latency_ms"]["fused"])
    s = doc["summary"]
    assert s["quadconv_k7_geomean_speedup_by_runtime"] == {"openvino": s["quadconv_k7_geomean_speedup"]}
    assert s["quadconv_k7_geomean_speedup"] > 0 and s["model_speedup"] is None and s["torch_train_speedup"] is None
    assert doc["boxrpb"] == [] and s["boxrpb_memory_growth"] is None
