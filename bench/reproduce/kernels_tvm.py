"""The three quadratic-conv variants of `reproduce kernels` in TVM on this host (Relax VM, llvm
target of this CPU, edgedet's default schedules), built the way `edgedet export --format tvm`
builds them (ONNX → `exporters.tvm.import_onnx` → `compile_module`):

  fused       one `edgedet::QuadraConv` node → edgedet's TE compute with three accumulators
              (`kernels/tvm_quadconv.py`, x86 schedule);
  decomposed  the node's ONNX function inlined (`--decompose`): three depthwise Conv + Mul +
              Add + bias;
  grouped     one Conv with 3C outputs (group C, [a_i, b_i, c_i] per channel), reshape to
              (1, C, 3, H, W), split, Mul + Add + bias.

Threads: TVM_NUM_THREADS, read once when TVM's thread pool starts (as `edgedet.runtimes.tvm`
sets it), so `kernels_layers` runs each thread count in its own child process.
x: (1, C, H, H) fp32; weights wa, wb, wc (C, 1, k, k), bias (C,).
"""

from __future__ import annotations

import numpy as np

from edgedet.bench.reproduce.kernels import layer_onnx

RUNTIME = "tvm"


def _conv_attrs(c: int, k: int) -> dict:
    pad = (k - 1) // 2
    return {"strides": [1, 1], "pads": [pad] * 4, "dilations": [1, 1], "group": c}


def _model(nodes, c: int, h: int, inits: dict[str, np.ndarray]):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "quadraconv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, h])],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def grouped_onnx(c: int, h: int, k: int, weights: list[np.ndarray]):
    """One grouped Conv with 3C outputs, reshape (1, C, 3, H, W), Split, a·b + c + bias."""
    from onnx import helper

    wa, wb, wc, bias = weights
    w3 = np.stack([wa, wb, wc], axis=1).reshape(3 * c, 1, k, k)  # outputs 3i, 3i+1, 3i+2 read channel i
    inits = {"w3": w3, "shape5": np.array([1, c, 3, h, h], np.int64), "shape4": np.array([1, c, h, h], np.int64),
             "bias4": bias.reshape(1, c, 1, 1)}
    nodes = [
        helper.make_node("Conv", ["x", "w3"], ["y3"], **_conv_attrs(c, k)),
        helper.make_node("Reshape", ["y3", "shape5"], ["y5"]),
        helper.make_node("Split", ["y5"], ["a", "b", "l"], axis=2),  # opset 17: equal parts, one per output
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "l"], ["s5"]),
        helper.make_node("Reshape", ["s5", "shape4"], ["s4"]),
        helper.make_node("Add", ["s4", "bias4"], ["y"]),
    ]
    return _model(nodes, c, h, inits)


class TvmRunner:
    """A compiled variant bound to its input: `infer()` runs it, `output()` returns y."""

    def __init__(self, executable, x: np.ndarray):
        import tvm
        from tvm import relax

        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self._vm.set_input("main", tvm.runtime.tensor(x))

    def infer(self) -> None:
        self._vm.invoke_stateful("main")

    def output(self) -> np.ndarray:
        self._vm.invoke_stateful("main")
        return self._vm.get_outputs("main").numpy()


def variants(c: int, h: int, k: int, weights: list[np.ndarray], x: np.ndarray) -> dict[str, TvmRunner]:
    """name → runner of the three variants for one layer shape (built for this host)."""
    from edgedet.exporters import tvm as tx

    tx.require_tvm()
    target = tx.get_target("host")
    models = {"fused": (layer_onnx(c, h, k, weights), True),
              "decomposed": (layer_onnx(c, h, k, weights, with_function=True), False),
              "grouped": (grouped_onnx(c, h, k, weights), False)}
    out = {}
    for name, (model, fused) in models.items():
        executable, _ = tx.compile_module(tx.import_onnx(model, fused=fused), target)
        out[name] = TvmRunner(executable, x)
    return out
