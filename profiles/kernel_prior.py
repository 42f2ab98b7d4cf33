"""The prior over single-kernel configurations a measured profile times: the shapes
edgedet's models, the search space and the reference CNNs use (widths C·2^i at 56/2^i for
a 224 input, input sizes 160–320), with jitter for other sizes (`neighbour`)."""

from __future__ import annotations

import random
from collections.abc import Callable

from edgedet.profiles.kernel_models import KernelConfig, cfg

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
    """(width, spatial size) of a stage: widths C·2^i at 56/2^i (224 input)."""
    i = r.choice([0, 1, 2, 3])
    h = max(2, round(56 * r.choice(SCALES) / 2**i))
    return r.choice(BASES) * 2**i, h


def _width(r: random.Random, lo: int = 16, hi: int = 1024) -> int:
    return r.choice([w for w in WIDTHS if lo <= w <= hi])


def _conv_flops(c: KernelConfig) -> int:
    q = c.p()
    return 2 * q["cout"] * q["cin"] * q["k"] ** 2 * (q["h"] // q["s"]) ** 2


def _conv(r: random.Random, h: int) -> KernelConfig | None:
    """Stem, downsampling, 3×3, 1×1 or large-kernel convs, within MAX_FLOPS (else None)."""
    fam = r.choice(["stem", "down", "k3", "k3", "k1", "k1", "big"])
    if fam == "down":
        ci, h = _stage(r)
        c = cfg("conv", cin=ci, cout=2 * ci, h=2 * h, k=2, s=2, act=0)
    elif fam == "stem":
        ks = r.choice([2, 4])
        cout, size = _width(r, 16, 128), r.choice([160, 192, 224, 256, 288])
        c = cfg("conv", cin=3, cout=cout, h=size, k=ks, s=ks, act=0)
    elif fam == "k3":
        w, h = _stage(r)
        cout, s, act = w * r.choice([1, 1, 2]), r.choice([1, 1, 2]), r.choice([0, 1])
        c = cfg("conv", cin=w, cout=cout, h=h, k=3, s=s, act=act)
    elif fam == "k1":
        w, h = _stage(r)
        cin, cout = w * r.choice([1, 4, 6]), w * r.choice([1, 4, 6])
        s, act = r.choice([1, 1, 1, 2]), r.choice([0, 1])
        c = cfg("conv", cin=cin, cout=cout, h=h, k=1, s=s, act=act)
    else:
        cin, cout = r.choice([3, 16, 32, 64, 96, 192]), _width(r, 16, 384)
        k, s = r.choice([5, 7, 11]), r.choice([1, 2, 4])
        c = cfg("conv", cin=cin, cout=cout, h=h, k=k, s=s, act=1)
    return c if _conv_flops(c) <= MAX_FLOPS else None


def _dwconv(r: random.Random, h: int) -> KernelConfig:
    w, h = _stage(r)
    cin, k, s, act = w * r.choice([1, 1, 4, 6]), r.choice([3, 5, 7]), r.choice([1, 1, 2]), r.choice([0, 1])
    return cfg("dwconv", cin=cin, cout=0, h=h, k=k, s=s, act=act)


def _quadconv(r: random.Random, h: int) -> KernelConfig:
    w, h = _stage(r)
    return cfg("quadconv", c=w, h=h, k=r.choice([3, 5, 7]))


def _linear(r: random.Random, h: int) -> KernelConfig | None:
    ci, h = _stage(r)
    co = max(8, int(ci * r.choice([0.25, 0.5, 2, 4, 4, 1])))
    return cfg("linear", h=h, cin=ci, cout=co) if ci * co * 2 * h * h <= MAX_FLOPS else None


def _gemm(r: random.Random, h: int) -> KernelConfig:
    cin, cout = r.choice([512, 1024, 1280, 2048, 4096, 9216, 25088]), r.choice([1000, 4096])
    return cfg("gemm", cin=cin, cout=cout, act=r.choice([0, 1]))


def _matmul(r: random.Random, h: int) -> KernelConfig:
    n = r.choice([49, 64, 144, 196])
    heads = r.choice([1, 2, 4, 8]) * r.choice([1, 16, 64])
    return cfg("matmul", heads=heads, n=n, d=r.choice([16, 32, 64]))


def _softmax(r: random.Random, h: int) -> KernelConfig:
    return cfg("softmax", heads=r.choice([4, 16, 64, 256]), n=r.choice([49, 64, 144]))


def _elementwise(kind: str) -> Callable[[random.Random, int], KernelConfig]:
    def draw(r: random.Random, h: int) -> KernelConfig:
        w, h = _stage(r)
        mult = r.choice([2, 4]) if kind == "gelu" and r.random() < 0.7 else 1
        return cfg(kind, h=h, c=w * mult)

    return draw


def _transpose(r: random.Random, h: int) -> KernelConfig:
    w, h = _stage(r)
    return cfg("transpose", h=h, c=w, dir=r.choice([0, 1]))


def _pool(kind: str) -> Callable[[random.Random, int], KernelConfig]:
    def draw(r: random.Random, h: int) -> KernelConfig:
        w, h = _stage(r)
        return cfg(kind, h=2 * h, c=w, k=r.choice([2, 3]), s=2)

    return draw


def _globalpool(r: random.Random, h: int) -> KernelConfig:
    w, h = _stage(r)
    return cfg("globalpool", h=h, c=w * r.choice([1, 4]), mean=r.choice([0, 1]))


def _concat(r: random.Random, h: int) -> KernelConfig:
    w, h = _stage(r)
    return cfg("concat", h=h, c=max(8, w // 2), n=r.choice([2, 2, 3, 4]))


def _layout(kind: str) -> Callable[[random.Random, int], KernelConfig]:
    def draw(r: random.Random, h: int) -> KernelConfig:
        w, h = _stage(r)
        return cfg(kind, h=h, c=w)

    return draw


ELEMENTWISE = ("layernorm", "gelu", "add", "scale_last", "scale_ch", "relu", "hardswish", "sigmoid")

# kind → draw(r, h): h is a stage size drawn before every attempt (kept for the draw order
# the shipped profiles were sampled with); None means "over budget, draw again"
_SAMPLERS: dict[str, Callable[[random.Random, int], KernelConfig | None]] = {
    "conv": _conv,
    "dwconv": _dwconv,
    "quadconv": _quadconv,
    "linear": _linear,
    "gemm": _gemm,
    "matmul": _matmul,
    "softmax": _softmax,
    **{k: _elementwise(k) for k in ELEMENTWISE},
    "transpose": _transpose,
    "maxpool": _pool("maxpool"),
    "avgpool": _pool("avgpool"),
    "globalpool": _globalpool,
    "concat": _concat,
    **{k: _layout(k) for k in ("split", "slice", "reshape")},
}


def sample(kind: str, r: random.Random) -> KernelConfig:
    """One configuration of `kind` from the prior."""
    draw = _SAMPLERS.get(kind)
    for _ in range(50 if draw else 0):
        c = draw(r, _stage(r)[1])
        if c is not None:
            return c
    return cfg("conv", cin=16, cout=16, h=14, k=3, s=1, act=0)


def neighbour(c: KernelConfig, r: random.Random) -> KernelConfig:
    """A nearby configuration (each size × or ÷ up to ~1.4), for adaptive sampling."""
    out = {}
    for k, v in c.p().items():
        if k in ("h", "cin", "cout", "c") and v > 3:
            out[k] = max(2, round(v * r.choice([0.7, 0.8, 0.9, 1.1, 1.25, 1.4])))
        else:
            out[k] = v
    if c.kind == "conv" and out.get("k") == 2 and out.get("s") == 2:
        out["cout"] = 2 * out["cin"]  # a downsampling conv doubles its width
    return KernelConfig(c.kind, tuple(sorted(out.items())))
