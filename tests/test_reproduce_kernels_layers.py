"""`reproduce kernels` per-layer variants in TVM host and PyTorch eager: each variant against
float64 on small odd shapes (a swapped weight would fail), and the CLI's JSON rows, roofline
fractions and per-runtime geomeans at tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numerics import scaled_error

from edgedet.bench.reproduce import kernels_torch
from edgedet.bench.reproduce.kernels import layer_data, reference
from edgedet.bench.reproduce.kernels_layers import add_roofline
from edgedet.cli.main import main

SHAPES = [(5, 9, 3), (5, 9, 7)]


def _check_variants(runners: dict, x: np.ndarray, weights: list[np.ndarray]) -> None:
    ref = reference(x, weights)
    wa, wb, wc, bias = weights
    swapped = reference(x, [wc, wb, wa, bias])  # Wa ↔ Wc: what a mixed-up variant would compute
    assert set(runners) == {"fused", "decomposed", "grouped"}
    for name, r in runners.items():
        out = r.output()
        assert out.shape == ref.shape, name
        assert scaled_error(out, ref) <= 1e-4, name
        assert scaled_error(out, swapped) > 1e-2, name
        r.infer()  # the timed call runs


@pytest.mark.parametrize("c,h,k", SHAPES)
def test_tvm_variants_match_float64(c, h, k):
    pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")
    from edgedet.bench.reproduce import kernels_tvm

    x, weights = layer_data(c, h, k, seed=3)
    _check_variants(kernels_tvm.variants(c, h, k, weights, x), x, weights)


@pytest.mark.parametrize("c,h,k", SHAPES)
def test_torch_variants_match_float64(c, h, k):
    from edgedet.kernels import torch_extension

    x, weights = layer_data(c, h, k, seed=3)
    runners = kernels_torch.variants(c, h, k, weights, x)
    assert torch_extension.available() is not None  # the fused variant runs edgedet's C++ op
    _check_variants(runners, x, weights)


def test_roofline_fraction_is_bound_over_measured():
    row = {"shape": [1, 4, 8, 8], "kernel": 3, "latency_ms": {"fused": 0.01, "decomposed": 0.05},
           "flops": {"fused": 10_000, "decomposed": 10_000}, "bytes": {"fused": 2_560, "decomposed": 12_000},
           "best_decomposed": "decomposed"}
    peak = {"threads": 1, "gemm_gflops": 10.0, "copy_gbps": 1.0}
    add_roofline(row, peak)
    rf = row["roofline"]
    # bytes / 1 GB/s: 2.56 µs and 12 µs; FLOPs / 10 GFLOP/s: 1 µs → both memory-bound
    assert rf["bound_by"] == {"fused": "memory", "decomposed": "memory"}
    assert rf["bound_ms"]["fused"] == pytest.approx(2.56e-3) and rf["bound_ms"]["decomposed"] == pytest.approx(12e-3)
    assert rf["fraction"]["fused"] == pytest.approx(2.56e-3 / 0.01)
    assert rf["fraction"]["decomposed"] == pytest.approx(12e-3 / 0.05)
    # a fused kernel at its bound (2.56 µs) against the measured decomposed 50 µs
    assert rf["fused_ceiling_speedup"] == pytest.approx(0.05 / 2.56e-3)


def test_reproduce_kernels_tvm_and_torch_rows(tmp_path):
    pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")
    info = tmp_path / "hostinfo.json"
    info.write_text(json.dumps({"peaks": [{"threads": 1, "gemm_gflops": 40.0, "copy_gbps": 12.0},
                                          {"threads": 2, "gemm_gflops": 80.0, "copy_gbps": 20.0}]}))
    # 2 threads: TVM runs in a child with TVM_NUM_THREADS=2 (it refuses to measure otherwise)
    out = tmp_path / "k.json"
    args = ["--input-size", "32", "--kernels", "3", "--runtimes", "tvm,torch", "--layer-threads", "2",
            "--hostinfo", str(info), "--no-model", "--no-train", "--no-boxrpb", "--rounds", "1", "--inner", "1",
            "--json", str(out)]
    assert main(["reproduce", "kernels", *args]) == 0
    doc = json.loads(out.read_text())
    rows = doc["quadconv"]
    shapes = [[1, 64, 8, 8], [1, 128, 4, 4], [1, 256, 2, 2], [1, 512, 1, 1]]
    assert [(r["runtime"], r["threads"]) for r in rows] == [(rt, 2) for rt in ("tvm", "torch") for _ in shapes]
    assert [r["shape"] for r in rows] == shapes * 2
    for r in rows:
        assert r["kernel"] == 3 and max(r["max_abs_err"].values()) <= 1e-5 * max(1.0, r["max_abs_ref"])
        assert r["speedup"] == pytest.approx(r["latency_ms"][r["best_decomposed"]] / r["latency_ms"]["fused"])
        rf = r["roofline"]
        assert rf["peak"]["threads"] == r["threads"] and rf["peak"]["source"] == str(info)
        for v, ms in r["latency_ms"].items():
            assert rf["fraction"][v] == pytest.approx(rf["bound_ms"][v] / ms)
        best = r["latency_ms"][r["best_decomposed"]]
        assert rf["fused_ceiling_speedup"] == pytest.approx(best / rf["bound_ms"]["fused"])
    s = doc["summary"]
    assert s["quadconv_k7_geomean_speedup"] is None  # the OpenVINO figure; no OpenVINO rows, no k=7
    assert s["quadconv_k7_geomean_speedup_by_runtime"] == {"tvm": None, "torch": None}
    assert s["quadconv_k7_ceiling_by_runtime_threads"] == {}  # k=3 only
    assert doc["layer_method"]["runtimes"] == ["tvm", "torch"] and doc["layer_method"]["threads"] == [2]


@pytest.mark.parametrize("flag,value", [("--runtimes", "openvino,onnx"), ("--layer-threads", "1,zero"),
                                        ("--layer-threads", "0")])
def test_reproduce_kernels_bad_layer_options_are_one_error(flag, value, tmp_path, capsys):
    out = tmp_path / "k.json"
    assert main(["reproduce", "kernels", flag, value, "--json", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and not out.exists()
