"""The throughput ceilings: Amdahl over the per-node profile and the roofline fraction."""

import pytest

from edgedet.bench.reproduce import throughput_ceiling as c


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
