"""The throughput ceilings: Amdahl over the per-node profile and the roofline fraction."""

import pytest

from edgedet.bench.reproduce import throughput_ceiling as c
from edgedet.bench.reproduce import throughput_nodes as tn


def test_dense_share_counts_only_gemm_like_nodes():
    prof = {"FullyConnected": 60.0, "Convolution": 5.0, "MatMul": 5.0, "Reference": 20.0, "Transpose": 10.0}
    assert c.dense_share(prof) == pytest.approx(0.70)
    assert list(c.shares(prof))[0] == "FullyConnected"
    assert c.shares({}) == {}


def test_ceilings_divide_the_measured_throughput_by_the_share_and_the_roofline_fraction():
    ref = {"name": "q", "throughput_items_per_s": 10.0, "roofline_fraction_bn": 0.5}
    prof = {"FullyConnected": 75.0, "Reference": 25.0}
    out = c.ceilings(ref, prof, {"hornet": {"throughput_items_per_s": 8.0}})
    assert out["amdahl_ceiling_items_per_s"] == pytest.approx(10.0 / 0.75)
    assert out["roofline_ceiling_items_per_s"] == pytest.approx(20.0)
    assert out["measured_ratio"]["hornet"] == pytest.approx(1.25)
    assert out["amdahl_max_ratio"]["hornet"] == pytest.approx(10.0 / 0.75 / 8.0)
    assert out["roofline_max_ratio"]["hornet"] == pytest.approx(2.5)


def test_median_profile_treats_a_missing_node_type_as_zero():
    med = c.median_profile([{"A": 1.0, "B": 4.0}, {"A": 3.0}, {"A": 2.0, "B": 2.0}])
    assert med == {"A": 2.0, "B": 2.0}


def _node(t, ms, nbytes=0, flops=0):
    return {"type": t, "ms": ms, "bytes": nbytes, "flops": flops}


def test_node_floor_is_the_larger_of_the_memory_and_the_compute_time():
    peak = {"copy_gbps": 10.0, "gemm_gflops": 100.0}
    assert c.node_floor_ms(_node("Transpose", 1.0, nbytes=20_000_000), peak) == pytest.approx(2.0)
    assert c.node_floor_ms(_node("Reference", 1.0, nbytes=1_000_000, flops=300_000_000), peak) == pytest.approx(3.0)


def test_per_node_bound_keeps_gemms_measured_and_never_exceeds_a_nodes_time():
    peak = {"copy_gbps": 10.0, "gemm_gflops": 100.0}
    nodes = [_node("FullyConnected", 50.0, nbytes=10**9, flops=10**12),  # dense: as measured, whatever its floor
             _node("Transpose", 10.0, nbytes=20_000_000),  # floor 2 ms
             _node("Reference", 20.0, flops=500_000_000),  # floor 5 ms
             _node("Add", 0.5, nbytes=20_000_000)]  # floor 2 ms > 0.5 ms measured: stays 0.5
    pn = c.per_node_bound(nodes, peak)
    assert pn["measured_ms"] == pytest.approx(80.5)
    assert pn["bound_ms"] == pytest.approx(50.0 + 2.0 + 5.0 + 0.5)
    assert pn["speedup"] == pytest.approx(80.5 / 57.5)
    assert pn["nodes_faster_than_floor"] == 1 and pn["nodes_faster_than_floor_ms"] == pytest.approx(0.5)
    assert list(pn["by_type"]) == ["FullyConnected", "Reference", "Transpose", "Add"]


def test_effective_peak_takes_the_best_measured_rates():
    nodes = [_node("FullyConnected", 10.0, flops=2 * 10**9), _node("Transpose", 1.0)]  # 200 GFLOP/s reached
    eff = c.effective_peak({"copy_gbps": 10.0, "gemm_gflops": 100.0}, nodes, cache_copy_gbps=40.0)
    assert eff["gemm_gflops"] == pytest.approx(200.0) and eff["copy_gbps"] == pytest.approx(40.0)
    eff = c.effective_peak({"copy_gbps": 10.0, "gemm_gflops": 300.0}, nodes)
    assert eff["gemm_gflops"] == pytest.approx(300.0) and eff["copy_gbps"] == pytest.approx(10.0)


def test_per_node_max_ratio_scales_the_throughput_by_the_time_saved():
    ref = {"name": "q", "throughput_items_per_s": 10.0, "roofline_fraction_bn": 0.5}
    nodes = [_node("FullyConnected", 60.0), _node("Transpose", 40.0, nbytes=100_000_000)]  # floor 10 ms
    peak = {"copy_gbps": 10.0, "gemm_gflops": 1.0}
    base = {"hornet": {"throughput_items_per_s": 8.0}}
    out = c.add_per_node(c.ceilings(ref, {"FullyConnected": 60.0, "Transpose": 40.0}, base), ref, nodes, peak, base)
    assert out["per_node_ceiling_items_per_s"] == pytest.approx(10.0 * 100 / 70)
    assert out["per_node_max_ratio"]["hornet"] == pytest.approx(10.0 * 100 / 70 / 8.0)
    assert out["amdahl_max_ratio"]["hornet"] == pytest.approx(10.0 / 0.6 / 8.0)  # the old fields stay
    assert out["per_node"]["peak"]["copy_gbps"] == pytest.approx(10.0)


def test_node_flops_of_the_quadratic_conv_gemms_and_data_movement():
    assert tn.quadraconv_flops(10, 7, 7) == 10 * (6 * 49 + 3)
    qc = [(8, 64, 56, 56), (64, 1, 7, 7), (64, 1, 7, 7), (64, 1, 7, 7), (64,)]
    assert tn.node_flops("Reference", qc, [(8, 64, 56, 56)], 1) == 8 * 64 * 56 * 56 * 297
    assert tn.node_flops("FullyConnected", [(8, 56, 56, 64), (256, 64)], [(8, 56, 56, 256)], 2) == \
        2 * 8 * 56 * 56 * 256 * 64
    assert tn.node_flops("Convolution", [(8, 3, 224, 224), (64, 3, 4, 4)], [(8, 64, 56, 56)], 1) == \
        2 * 8 * 64 * 56 * 56 * 48
    assert tn.node_flops("Transpose", [(2, 3)], [(3, 2)], 1) == 0
    assert tn.node_flops("Add", [(2, 3), (2, 3)], [(2, 3)], 2) == 12


def test_node_records_of_a_tiny_openvino_model_have_its_shapes_bytes_and_flops(tmp_path):
    ov = pytest.importorskip("openvino")
    import numpy as np
    import openvino.opset13 as ops

    x = ops.parameter([2, 4, 6, 6], np.float32, name="x")
    t = ops.transpose(x, ops.constant(np.array([0, 2, 3, 1], dtype=np.int64)))
    w = ops.constant(np.random.default_rng(0).random((4, 8), dtype=np.float32))
    y = ops.add(ops.matmul(t, w, False, False), ops.constant(np.ones(8, dtype=np.float32)))
    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.Model([y], [x]), str(xml))
    feeds = {0: np.random.default_rng(1).random((2, 4, 6, 6), dtype=np.float32)}
    recs = tn.node_records(xml, feeds, threads=1, runs=2)
    by = {r["type"]: r for r in recs}
    assert all(r["ms"] > 0 for r in recs)
    fc = by["FullyConnected"]  # the MatMul with constant weights, the bias Add fused into it
    assert fc["out_shapes"] == [(2, 6, 6, 8)]
    assert fc["flops"] == 2 * 2 * 6 * 6 * 8 * 4
    act = 2 * 4 * 6 * 6 * 4  # bytes of the f32 activation
    movers = [r for r in recs if r["type"] in ("Transpose", "Reorder")]
    if movers:  # the plugin may fold the transpose into the FC's input; if it runs, it moves act in and out
        assert all(2 * act <= r["bytes"] <= 2 * act + 64 for r in movers)
    out = 2 * 6 * 6 * 8 * 4
    assert act + out < fc["bytes"] <= act + out + 4 * 8 * 4 + 8 * 4  # + weights and bias as the plugin stores them
