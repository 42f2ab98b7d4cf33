"""Register-tiled GEMM default schedules (exporters/tvm_gemm): a token matmul with leading
spatial axes and an element-wise epilogue, and dense NCHW convolutions (stride, padding),
scheduled by their rule and equal to float64 references; a transposed-B matmul is left to
the next rule."""

from __future__ import annotations

import numpy as np
import pytest
from numerics import scaled_error

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")

from tvm import te, topi  # noqa: E402

from edgedet.exporters import tvm_schedules as ts  # noqa: E402
from edgedet.exporters.tvm_target import get_target  # noqa: E402

RNG = np.random.default_rng(0)


def _run(func, arrays):
    """Build `func` for this CPU, run it on `arrays` (inputs then output), return the output."""
    host = get_target("host")
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=tvm.target.Target(host.target)).mod
    args = [tvm.runtime.tensor(np.ascontiguousarray(a, np.float32)) for a in arrays]
    lib["main"](*args)
    return args[-1].numpy()


def _schedule(func):
    host = get_target("host")
    return ts.schedule_function(func, tvm.target.Target(host.target), host.fp32_lanes)


def _matmul_gelu(shape_a, n, transposed=False):
    """(…, K) @ (K, N) [+ bias, x·sigmoid(1.702x)] with the leading axes of `shape_a` kept."""
    a = te.placeholder(shape_a, name="a")
    w = te.placeholder((n, shape_a[-1]) if transposed else (shape_a[-1], n), name="w")
    bias = te.placeholder((n,), name="bias")
    k = te.reduce_axis((0, shape_a[-1]), "k")
    lead = len(shape_a) - 1
    mm = te.compute((*shape_a[:-1], n), lambda *ix: te.sum(
        a[(*ix[:lead], k)] * (w[ix[lead], k] if transposed else w[k, ix[lead]]), axis=k), name="matmul")
    add = te.compute(mm.shape, lambda *ix: mm(*ix) + bias[ix[-1]], name="add")
    act = te.compute(mm.shape, lambda *ix: add(*ix) * te.sigmoid(add(*ix) * 1.702), name="act")
    return te.create_prim_func([a, w, bias, act])


def _matmul_gelu_ref(x, w, b, transposed=False):
    y = x.astype(np.float64) @ (w.T if transposed else w).astype(np.float64) + b
    return y / (1 + np.exp(-1.702 * y))


@pytest.mark.parametrize("shape_a,n", [((1, 7, 8, 32), 48), ((56, 24), 16), ((1, 6, 20), 16)])
def test_matmul_with_epilogue_is_a_tiled_gemm(shape_a, n):
    func = _matmul_gelu(shape_a, n)
    new, how = _schedule(func)
    assert how == "tiled_matmul", how
    script = new.script()
    assert "local" in script and "T.vectorized" in script and "T.parallel" in script
    x = RNG.standard_normal(shape_a).astype(np.float32)
    w = RNG.standard_normal((shape_a[-1], n)).astype(np.float32) / np.float32(np.sqrt(shape_a[-1]))
    b = RNG.standard_normal(n).astype(np.float32)
    got = _run(new, [x, w, b, np.zeros((*shape_a[:-1], n), np.float32)])
    assert scaled_error(got, _matmul_gelu_ref(x, w, b)) <= 1e-4


def test_transposed_weights_are_left_to_the_next_rule():
    _, how = _schedule(_matmul_gelu((1, 8, 32), 16, transposed=True))
    assert how != "tiled_matmul"


@pytest.mark.parametrize("c,co,hw,k,stride,pad", [(16, 32, 16, 2, 2, 0), (3, 16, 28, 4, 4, 0),
                                                   (8, 16, 14, 3, 1, 1), (8, 32, 15, 3, 2, 1)])
def test_dense_conv2d_is_a_tiled_gemm(c, co, hw, k, stride, pad):
    x_ph = te.placeholder((1, c, hw, hw), name="x")
    w_ph = te.placeholder((co, c, k, k), name="w")
    b_ph = te.placeholder((1, co, 1, 1), name="b")
    conv = topi.nn.conv2d_nchw(x_ph, w_ph, stride, pad, 1)
    out = te.compute(conv.shape, lambda n, f, y, x: conv[n, f, y, x] + b_ph[0, f, 0, 0], name="add")
    new, how = _schedule(te.create_prim_func([x_ph, w_ph, b_ph, out]))
    assert how == "conv_gemm", how
    x = RNG.standard_normal((1, c, hw, hw)).astype(np.float32)
    w = RNG.standard_normal((co, c, k, k)).astype(np.float32) / np.float32(np.sqrt(c * k * k))
    b = RNG.standard_normal((1, co, 1, 1)).astype(np.float32)
    got = _run(new, [x, w, b, np.zeros([int(s) for s in out.shape], np.float32)])
    import torch

    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                     torch.from_numpy(b.reshape(-1)).double(), stride, pad).numpy()
    assert scaled_error(got, ref) <= 1e-4
