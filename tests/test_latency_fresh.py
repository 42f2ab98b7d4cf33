"""Whole-model timing in a fresh interpreter (what in-context calibration and
`reproduce predictor` use): a real ONNX Runtime child, errors as one line."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedet.errors import EdgedetError
from edgedet.profiles.fresh import time_fresh


def _model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((8, 8, 3, 3), np.float32), "w")
    n = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    g = helper.make_graph(n, "g", [x], [y], initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_fresh_process_times_a_model():
    tm = time_fresh(_model(), "onnxruntime", 1, min_s=0.05, min_runs=5, max_runs=20)
    assert tm.basis == "cpu-time" and 5 <= tm.runs <= 20
    assert 0 < tm.min_ms <= tm.median_ms and tm.best_ms > 0


def test_fresh_process_reports_a_bad_model_in_one_line():
    with pytest.raises(EdgedetError) as e:
        time_fresh(b"not an onnx model", "onnxruntime", 1, min_s=0.01)
    assert "\n" not in str(e.value)
