"""Single-kernel ONNX models for measured profiles, spelled exactly as edgedet's exporter
and torchvision spell them (so the fused kernel found in a real model is the one timed).
The prior over their configurations is `kernel_prior`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPSET = 17


@dataclass(frozen=True)
class KernelConfig:
    """One sampled configuration: a builder name and its integer parameters."""

    kind: str
    params: tuple[tuple[str, int], ...]

    def p(self) -> dict[str, int]:
        return dict(self.params)


def cfg(kind: str, **kw: int) -> KernelConfig:
    return KernelConfig(kind, tuple(sorted((k, int(v)) for k, v in kw.items())))


class _B:
    """Tiny ONNX graph builder: data input 'x', random initialisers."""

    def __init__(self, seed: int = 0):
        self.nodes, self.inits, self.inputs = [], [], []
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def input(self, shape: list[int], name: str = "x") -> str:
        from onnx import TensorProto, helper

        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def const(self, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        n = self.name("c")
        self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def w(self, *shape: int) -> str:
        return self.const((self.rng.standard_normal(shape) * 0.05).astype(np.float32))

    def i64(self, vals) -> str:
        return self.const(np.array(vals, dtype=np.int64))

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def model(self, outputs: list[str]) -> bytes:
        from onnx import TensorProto, helper

        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        g = helper.make_graph(self.nodes, "kernel", self.inputs, outs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        return m.SerializeToString()


def build(c: KernelConfig) -> bytes:
    """ONNX bytes of one kernel configuration."""
    builder = _BUILDERS.get(c.kind)
    if builder is None:
        raise ValueError(f"unknown kernel kind {c.kind!r}")
    return builder(_B(), c.kind, c.p())


def _conv(b: _B, k: str, p: dict) -> bytes:
    cin, cout, h, ks, s = p["cin"], p["cout"], p["h"], p["k"], p["s"]
    g = cin if k == "dwconv" else 1
    if k == "dwconv":
        cout = cin
    x = b.input([1, cin, h, h])
    pad = ks // 2 if ks % 2 else 0
    y = b.op(
        "Conv",
        [x, b.w(cout, cin // g, ks, ks), b.w(cout)],
        group=g,
        kernel_shape=[ks, ks],
        strides=[s, s],
        pads=[pad] * 4,
    )
    if p.get("act"):
        y = b.op("Relu", [y])
    return b.model([y])


def _quadconv(b: _B, k: str, p: dict) -> bytes:
    """The exporter's spelling of QuadraConv2d (grouped conv, 3C outputs)."""
    ch, h, ks = p["c"], p["h"], p["k"]
    x = b.input([1, ch, h, h])
    y = b.op(
        "Conv",
        [x, b.w(3 * ch, 1, ks, ks)],
        group=ch,
        kernel_shape=[ks, ks],
        strides=[1, 1],
        pads=[ks // 2] * 4,
        dilations=[1, 1],
    )
    r = b.op("Reshape", [y, b.i64([1, ch, 3, h, h])])
    ga, gb, gc = (b.op("Gather", [r, b.const(np.array(i, dtype=np.int64))], axis=2) for i in range(3))
    z = b.op("Add", [b.op("Mul", [ga, gb]), gc])
    z = b.op("Add", [z, b.w(1, ch, 1, 1)])
    return b.model([z])


def _linear(b: _B, k: str, p: dict) -> bytes:
    """Channels-last MatMul + bias, as nn.Linear on (N,H,W,C) exports."""
    h, cin, cout = p["h"], p["cin"], p["cout"]
    x = b.input([1, h, h, cin] if h > 0 else [1, cin])
    y = b.op("Add", [b.op("MatMul", [x, b.w(cin, cout)]), b.w(cout)])
    return b.model([y])


def _gemm(b: _B, k: str, p: dict) -> bytes:
    """Classifier head as torchvision exports it."""
    x = b.input([1, p["cin"]])
    y = b.op("Gemm", [x, b.w(p["cout"], p["cin"]), b.w(p["cout"])], alpha=1.0, beta=1.0, transB=1)
    if p.get("act"):
        y = b.op("Relu", [y])
    return b.model([y])


def _matmul(b: _B, k: str, p: dict) -> bytes:
    hd, n, d = p["heads"], p["n"], p["d"]
    q = b.input([1, hd, n, d], "x")
    kt = b.input([1, hd, d, n], "kt")
    return b.model([b.op("MatMul", [q, kt])])


def _layernorm(b: _B, k: str, p: dict) -> bytes:
    h, ch = p["h"], p["c"]
    x = b.input([1, h, h, ch])
    return b.model([b.op("LayerNormalization", [x, b.w(ch), b.w(ch)], axis=-1, epsilon=1e-6)])


def _gelu(b: _B, k: str, p: dict) -> bytes:
    """Div / Erf / Add / Mul / Mul, as torch exports nn.GELU at opset 17."""
    x = b.input([1, p["h"], p["h"], p["c"]])
    e = b.op("Erf", [b.op("Div", [x, b.const(np.array(1.4142135, dtype=np.float32))])])
    a = b.op("Add", [e, b.const(np.array(1.0, dtype=np.float32))])
    y = b.op("Mul", [b.op("Mul", [x, a]), b.const(np.array(0.5, dtype=np.float32))])
    return b.model([y])


def _softmax(b: _B, k: str, p: dict) -> bytes:
    x = b.input([1, p["heads"], p["n"], p["n"]])
    return b.model([b.op("Softmax", [x], axis=-1)])


def _pointwise(b: _B, k: str, p: dict) -> bytes:
    h, ch = p["h"], p["c"]
    shape = [1, h, h, ch] if k == "scale_last" else [1, ch, h, h]
    x = b.input(shape)
    if k == "add":
        y = b.op("Add", [x, b.input(shape, "x2")])
    elif k == "scale_last":
        y = b.op("Mul", [b.w(ch), x])
    elif k == "scale_ch":
        y = b.op("Mul", [b.w(1, ch, 1, 1), x])
    else:
        y = b.op({"relu": "Relu", "hardswish": "HardSwish", "sigmoid": "Sigmoid"}[k], [x])
    return b.model([y])


def _transpose(b: _B, k: str, p: dict) -> bytes:
    h, ch = p["h"], p["c"]
    x = b.input([1, ch, h, h] if p["dir"] == 0 else [1, h, h, ch])
    return b.model([b.op("Transpose", [x], perm=[0, 2, 3, 1] if p["dir"] == 0 else [0, 3, 1, 2])])


def _pool(b: _B, k: str, p: dict) -> bytes:
    h, ch, ks, s = p["h"], p["c"], p["k"], p["s"]
    x = b.input([1, ch, h, h])
    op = "MaxPool" if k == "maxpool" else "AveragePool"
    return b.model(
        [b.op(op, [x], kernel_shape=[ks, ks], strides=[s, s], pads=[ks // 2 if ks % 2 else 0] * 4)]
    )


def _globalpool(b: _B, k: str, p: dict) -> bytes:
    x = b.input([1, p["c"], p["h"], p["h"]])
    if p["mean"]:
        return b.model([b.op("ReduceMean", [x], axes=[2, 3], keepdims=0)])
    return b.model([b.op("GlobalAveragePool", [x])])


def _concat(b: _B, k: str, p: dict) -> bytes:
    h, ch, n = p["h"], p["c"], p["n"]
    xs = [b.input([1, ch, h, h], f"x{i}" if i else "x") for i in range(n)]
    return b.model([b.op("Concat", xs, axis=1)])


def _split(b: _B, k: str, p: dict) -> bytes:
    x = b.input([1, p["c"], p["h"], p["h"]])
    from onnx import helper

    outs = [b.name("s"), b.name("s")]
    b.nodes.append(
        helper.make_node("Split", [x, b.i64([p["c"] // 2, p["c"] - p["c"] // 2])], outs, axis=1)
    )
    return b.model(outs)


def _slice(b: _B, k: str, p: dict) -> bytes:
    x = b.input([1, p["c"], p["h"], p["h"]])
    return b.model([b.op("Slice", [x, b.i64([0]), b.i64([p["c"] // 2]), b.i64([1])])])


def _reshape(b: _B, k: str, p: dict) -> bytes:
    x = b.input([1, p["c"], p["h"], p["h"]])
    return b.model([b.op("Reshape", [x, b.i64([1, p["c"], p["h"] * p["h"]])])])


# kernel kind → its one-kernel ONNX model
_BUILDERS = {
    "conv": _conv,
    "dwconv": _conv,
    "quadconv": _quadconv,
    "linear": _linear,
    "gemm": _gemm,
    "matmul": _matmul,
    "layernorm": _layernorm,
    "gelu": _gelu,
    "softmax": _softmax,
    "add": _pointwise,
    "scale_last": _pointwise,
    "scale_ch": _pointwise,
    "relu": _pointwise,
    "hardswish": _pointwise,
    "sigmoid": _pointwise,
    "transpose": _transpose,
    "maxpool": _pool,
    "avgpool": _pool,
    "globalpool": _globalpool,
    "concat": _concat,
    "split": _split,
    "slice": _slice,
    "reshape": _reshape,
}
