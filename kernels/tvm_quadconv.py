"""The quadratic depthwise convolution as ONE TVM tensor-expression compute, with CPU schedules.

    y[n,c,i,j] = A·B + L + bias[c],   (A, B, L)[n,c,i,j] = Σ_{kh,kw} x̃[n,c,i·s+kh·d, j·s+kw·d] · (wa, wb, wc)[c,0,kh,kw]

A, B and L are one reduction with a three-field reducer (three accumulators), so each tap of
the window loads the input element once and feeds three FMAs. x̃ is x zero-padded per
(n, c) plane; the output tile is (rows × lanes) outputs, rows and lanes of the target:
- x86: lanes = the vector width (8 fp32 with AVX2, 16 with AVX-512), rows = 4 (12 ymm/zmm
  accumulators);
- cortex-a76 (NEON, 128 bit): lanes = 4, rows = 4 (12 of the 32 q registers).
Loops: (n·c) in parallel → pad the plane into a per-thread buffer → row block → column block
→ kh → kw → rows (unrolled) → lanes (vector). Out-of-range tile positions (H or W not a
multiple of the tile) are computed on the zero padding and never stored.

`quadconv_func(spec)` is the unscheduled function (plain TVM lowering; what a featureless build
runs); `scheduled_quadconv(spec, tile)` the tiled one. Both take (x, wa, wb, wc, bias) → y with
the shapes of `QuadConvSpec` and carry the attribute `edgedet.kernel = "quadconv"` plus the
spec, so a compiler pass can recognise the function and swap in the schedule for its target.
tvm is imported inside the functions (heavy optional stack).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KERNEL_ATTR = "edgedet.kernel"
KERNEL_NAME = "quadconv"
SPEC_ATTR = "edgedet.quadconv_spec"  # "n,c,h,w,k,stride,pad,dilation"


@dataclass(frozen=True)
class QuadConvSpec:
    """Shapes of one depthwise quadratic conv: x (n,c,h,w), weights (c,1,k,k), bias (c,)."""

    n: int
    c: int
    h: int
    w: int
    k: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1

    def out_len(self, size: int) -> int:
        return (size + 2 * self.pad - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.out_len(self.h), self.out_len(self.w))

    def encode(self) -> str:
        return ",".join(str(v) for v in asdict(self).values())

    @classmethod
    def decode(cls, text: str) -> QuadConvSpec:
        return cls(*(int(v) for v in str(text).split(",")))


@dataclass(frozen=True)
class Tile:
    """Output tile of the scheduled kernel: `rows` output rows × `lanes` columns (one vector)."""

    lanes: int
    rows: int = 4


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _compute(spec: QuadConvSpec, tile: Tile | None):
    """TE tensors (inputs…, y) of the fused compute; with a tile the accumulators cover the
    output rounded up to whole tiles (padding reads zeros)."""
    from tvm import te, tirx

    s, d, p, k = spec.stride, spec.dilation, spec.pad, spec.k
    n, c, h, w = spec.n, spec.c, spec.h, spec.w
    _, _, ho, wo = spec.out_shape
    hq, wq = (ho, wo) if tile is None else (_round_up(ho, tile.rows), _round_up(wo, tile.lanes))
    hp, wp = (hq - 1) * s + d * (k - 1) + 1, (wq - 1) * s + d * (k - 1) + 1
    x = te.placeholder((n, c, h, w), "float32", "x")
    wa, wb, wc = (te.placeholder((c, 1, k, k), "float32", nm) for nm in ("wa", "wb", "wc"))
    bias = te.placeholder((c,), "float32", "bias")
    zero = tirx.const(0.0, "float32")
    xp = te.compute(
        (n, c, hp, wp),
        lambda b, ch, i, j: tirx.if_then_else(
            tirx.all(i >= p, i < h + p, j >= p, j < w + p), x[b, ch, i - p, j - p], zero
        ),
        name="pad",
    )
    sum3 = te.comm_reducer(
        lambda a, b: (a[0] + b[0], a[1] + b[1], a[2] + b[2]),
        lambda t0, t1, t2: (tirx.const(0, t0), tirx.const(0, t1), tirx.const(0, t2)),
        name="sum3",
    )
    kh, kw = te.reduce_axis((0, k), "kh"), te.reduce_axis((0, k), "kw")

    def window(b, ch, i, j):
        v = xp[b, ch, i * s + kh * d, j * s + kw * d]
        return sum3((v * wa[ch, 0, kh, kw], v * wb[ch, 0, kh, kw], v * wc[ch, 0, kh, kw]), axis=[kh, kw])

    acc_a, acc_b, acc_l = te.compute((n, c, hq, wq), window, name="acc")
    y = te.compute(
        (n, c, ho, wo),
        lambda b, ch, i, j: acc_a[b, ch, i, j] * acc_b[b, ch, i, j] + acc_l[b, ch, i, j] + bias[ch],
        name="y",
    )
    return [x, wa, wb, wc, bias, y]


def _with_attrs(func, spec: QuadConvSpec):
    return func.with_attr(KERNEL_ATTR, KERNEL_NAME).with_attr(SPEC_ATTR, spec.encode()).with_attr("op_pattern", 8)


def quadconv_func(spec: QuadConvSpec):
    """The unscheduled PrimFunc (x, wa, wb, wc, bias) → y; op_pattern opaque (never fused)."""
    from tvm import te

    return _with_attrs(te.create_prim_func(_compute(spec, None)), spec)


def scheduled_quadconv(spec: QuadConvSpec, tile: Tile):
    """The PrimFunc scheduled for `tile`: parallel over n·c, padded plane per (n, c), register
    tile rows × lanes with three accumulators in registers, vector loads and FMAs."""
    from tvm import s_tir, te

    sch = s_tir.Schedule(te.create_prim_func(_compute(spec, tile)))
    acc, pad, y = sch.get_sblock("acc"), sch.get_sblock("pad"), sch.get_sblock("y")
    n, c, i, j, kh, kw = sch.get_loops(acc)
    nc = sch.fuse(n, c)
    io, ii = sch.split(i, [None, tile.rows])
    jo, ji = sch.split(j, [None, tile.lanes])
    sch.reorder(nc, io, jo, kh, kw, ii, ji)
    sch.reverse_compute_at(y, jo)
    sch.compute_at(pad, nc)
    for idx in range(3):
        sch.set_scope(acc, idx, "local")
    sch.parallel(nc)
    sch.unroll(ii)
    sch.vectorize(ji)
    init = sch.decompose_reduction(acc, kh)
    init_loops = sch.get_loops(init)
    sch.unroll(init_loops[-2])
    sch.vectorize(init_loops[-1])
    _, _, ho, wo = spec.out_shape
    y_loops = sch.get_loops(y)
    if ho % tile.rows == 0:
        sch.unroll(y_loops[-2])
    if wo % tile.lanes == 0:  # else the tail columns are masked scalar stores
        sch.vectorize(y_loops[-1])
    return _with_attrs(sch.mod["main"], spec).with_attr("tirx.is_scheduled", True)


def spec_of(func) -> QuadConvSpec | None:
    """The spec of an edgedet quadconv PrimFunc, None for any other function."""
    attrs = func.attrs
    if attrs is None or KERNEL_ATTR not in attrs or str(attrs[KERNEL_ATTR]) != KERNEL_NAME:
        return None
    return QuadConvSpec.decode(attrs[SPEC_ATTR])
