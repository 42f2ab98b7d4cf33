"""Single-kernel ONNX models for measured profiles, spelled exactly as edgedet's exporter
and torchvision spell them (so the fused kernel found in a real model is the one timed),
and the prior over their configurations: the shapes edgedet's models, search space and
the reference CNNs use, with jitter for other input sizes."""

from __future__ import annotations

import random
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


# --- the prior over configurations ------------------------------------------------------
WIDTHS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
SIZES = [7, 14, 28, 56, 112]
KINDS = [
    "conv",
    "dwconv",
    "quadconv",
    "linear",
    "gemm",
    "matmul",
    "layernorm",
    "gelu",
    "softmax",
    "add",
    "scale_last",
    "scale_ch",
    "relu",
    "hardswish",
    "sigmoid",
    "transpose",
    "maxpool",
    "avgpool",
    "globalpool",
    "concat",
    "split",
    "slice",
    "reshape",
]
# relative sampling weight: classes QuadraNet and the reference CNNs spend time in
WEIGHTS = {
    "conv": 8,
    "dwconv": 3,
    "quadconv": 5,
    "linear": 6,
    "gemm": 2,
    "layernorm": 3,
    "gelu": 3,
    "transpose": 3,
    "add": 2,
    "scale_last": 2,
    "scale_ch": 1,
    "maxpool": 1,
    "globalpool": 1,
    "concat": 1,
}
MAX_FLOPS = 2.5e9


BASES = [16, 24, 32, 48, 64, 96, 128]
SCALES = [0.57, 0.71, 0.86, 1.0, 1.0, 1.0, 1.14, 1.43]


def _stage(r: random.Random) -> tuple[int, int]:
    """(width, spatial size) of a stage: widths C·2^i at 56/2^i (224 input), input sizes
    160–320 — the grid QuadraNet, the search space and the reference CNNs live on."""
    i = r.choice([0, 1, 2, 3])
    h = max(2, round(56 * r.choice(SCALES) / 2**i))
    return r.choice(BASES) * 2**i, h


def _size(r: random.Random) -> int:
    return _stage(r)[1]


def _width(r: random.Random, lo: int = 16, hi: int = 1024) -> int:
    return r.choice([w for w in WIDTHS if lo <= w <= hi])


def _fit_budget(c: int, h: int, per: float) -> bool:
    return c * h * h * per <= MAX_FLOPS


def sample(kind: str, r: random.Random) -> KernelConfig:
    """One configuration of `kind` from the prior."""
    for _ in range(50):
        h = _size(r)
        if kind == "conv":
            fam = r.choice(["stem", "down", "k3", "k3", "k1", "k1", "big"])
            if fam == "down":
                ci, h = _stage(r)
                c = cfg("conv", cin=ci, cout=2 * ci, h=2 * h, k=2, s=2, act=0)
            elif fam == "stem":
                ks = r.choice([2, 4])
                c = cfg(
                    "conv",
                    cin=3,
                    cout=_width(r, 16, 128),
                    h=r.choice([160, 192, 224, 256, 288]),
                    k=ks,
                    s=ks,
                    act=0,
                )
            elif fam == "k3":
                w, h = _stage(r)
                c = cfg(
                    "conv",
                    cin=w,
                    cout=w * r.choice([1, 1, 2]),
                    h=h,
                    k=3,
                    s=r.choice([1, 1, 2]),
                    act=r.choice([0, 1]),
                )
            elif fam == "k1":
                w, h = _stage(r)
                c = cfg(
                    "conv",
                    cin=w * r.choice([1, 4, 6]),
                    cout=w * r.choice([1, 4, 6]),
                    h=h,
                    k=1,
                    s=r.choice([1, 1, 1, 2]),
                    act=r.choice([0, 1]),
                )
            else:
                c = cfg(
                    "conv",
                    cin=r.choice([3, 16, 32, 64, 96, 192]),
                    cout=_width(r, 16, 384),
                    h=h,
                    k=r.choice([5, 7, 11]),
                    s=r.choice([1, 2, 4]),
                    act=1,
                )
            q = c.p()
            if 2 * q["cout"] * q["cin"] * q["k"] ** 2 * (q["h"] // q["s"]) ** 2 <= MAX_FLOPS:
                return c
        elif kind == "dwconv":
            w, h = _stage(r)
            return cfg(
                "dwconv",
                cin=w * r.choice([1, 1, 4, 6]),
                cout=0,
                h=h,
                k=r.choice([3, 5, 7]),
                s=r.choice([1, 1, 2]),
                act=r.choice([0, 1]),
            )
        elif kind == "quadconv":
            w, h = _stage(r)
            return cfg("quadconv", c=w, h=h, k=r.choice([3, 5, 7]))
        elif kind == "linear":
            ci, h = _stage(r)
            co = max(8, int(ci * r.choice([0.25, 0.5, 2, 4, 4, 1])))
            if _fit_budget(ci * co * 2, h, 1):
                return cfg("linear", h=h, cin=ci, cout=co)
        elif kind == "gemm":
            return cfg(
                "gemm",
                cin=r.choice([512, 1024, 1280, 2048, 4096, 9216, 25088]),
                cout=r.choice([1000, 4096]),
                act=r.choice([0, 1]),
            )
        elif kind == "matmul":
            n = r.choice([49, 64, 144, 196])
            return cfg(
                "matmul", heads=r.choice([1, 2, 4, 8]) * r.choice([1, 16, 64]), n=n, d=r.choice([16, 32, 64])
            )
        elif kind == "softmax":
            return cfg("softmax", heads=r.choice([4, 16, 64, 256]), n=r.choice([49, 64, 144]))
        elif kind in ("layernorm", "gelu", "add", "scale_last", "scale_ch", "relu", "hardswish", "sigmoid"):
            w, h = _stage(r)
            mult = r.choice([2, 4]) if kind == "gelu" and r.random() < 0.7 else 1
            return cfg(kind, h=h, c=w * mult)
        elif kind == "transpose":
            w, h = _stage(r)
            return cfg("transpose", h=h, c=w, dir=r.choice([0, 1]))
        elif kind in ("maxpool", "avgpool"):
            w, h = _stage(r)
            return cfg(kind, h=2 * h, c=w, k=r.choice([2, 3]), s=2)
        elif kind == "globalpool":
            w, h = _stage(r)
            return cfg("globalpool", h=h, c=w * r.choice([1, 4]), mean=r.choice([0, 1]))
        elif kind == "concat":
            w, h = _stage(r)
            return cfg("concat", h=h, c=max(8, w // 2), n=r.choice([2, 2, 3, 4]))
        elif kind in ("split", "slice", "reshape"):
            w, h = _stage(r)
            return cfg(kind, h=h, c=w)
    return cfg("conv", cin=16, cout=16, h=14, k=3, s=1, act=0)


def neighbour(c: KernelConfig, r: random.Random) -> KernelConfig:
    """A nearby configuration (each size × or ÷ up to ~1.4), for adaptive sampling."""
    q = c.p()
    out = {}
    for k, v in q.items():
        if k in ("h", "cin", "cout", "c") and v > 3:
            out[k] = max(2, round(v * r.choice([0.7, 0.8, 0.9, 1.1, 1.25, 1.4])))
        else:
            out[k] = v
    if c.kind == "conv" and q.get("k") == 2 and q.get("s") == 2:
        out["cout"] = 2 * out["cin"]
    if c.kind == "quadconv" or c.kind == "gelu":
        pass
    return KernelConfig(c.kind, tuple(sorted(out.items())))
