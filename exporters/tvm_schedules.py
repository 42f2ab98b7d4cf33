"""Rule-based default schedules for CPU TIR functions (what an untuned TVM build runs).

An unscheduled Relax build lowers every fused operator to plain loop nests: no vector code,
no register tiles; a QuadraNet's pointwise matmuls then run an order of magnitude slower than
in ONNX Runtime. edgedet's fused quadratic conv (`edgedet.kernels.tvm_quadconv`) gets its hand
schedule for the target's vector lanes (`edgedet.quadconv`); every other PrimFunc gets the first
rule that applies:
0. `tiled_matmul` / `conv_gemm` (`edgedet.exporters.tvm_gemm`) — token matmuls with their
   element-wise epilogue, and NCHW convolutions, as register-tiled GEMMs;
1. `tiled_reduction` — other matmul / conv-like functions (one reduction block, spatial axes first):
   the innermost spatial axis split into vector lanes, the next one into a register tile of
   rows, reduction loops moved between, accumulation in a local buffer, vector write-back;
2. TVM's dlight CPU rules (GEMV, Reduction: softmax / layer norm), not on convolutions;
3. `vectorized_injective` — element-wise functions: each block's loops fused and vectorised.
A rule that raises on a function (dlight's GEMV asserts on some of ASAG's) is skipped for
that function only; the functions no rule scheduled are reported, and TVM's own lowering
still compiles them correctly, just slowly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgedet.exporters import tvm_gemm
from edgedet.exporters.tvm_gemm import block_kinds as _kinds
from edgedet.exporters.tvm_gemm import loop_extent as _extent
from edgedet.exporters.tvm_gemm import vector_lanes as _lanes
from edgedet.exporters.tvm_gemm import vectorize_block
from edgedet.kernels import tvm_quadconv

QUADCONV_RULE = "edgedet.quadconv"
ROWS = 4  # register-tile height of tiled_reduction
MAX_BLOCKS = 32  # dlight tries to inline block after block: minutes on ASAG's fused NMS functions


@dataclass
class ScheduleReport:
    """Which rule scheduled each PrimFunc; `unscheduled` name → why no rule applied."""

    applied: dict[str, str] = field(default_factory=dict)
    unscheduled: dict[str, str] = field(default_factory=dict)
    tuned: list[str] = field(default_factory=list)  # scheduled from a MetaSchedule database

    def to_json(self) -> dict:
        counts: dict[str, int] = {}
        for rule in self.applied.values():
            counts[rule] = counts.get(rule, 0) + 1
        return {
            "functions": len(self.applied) + len(self.unscheduled) + len(self.tuned),
            "tuned": len(self.tuned),
            "rules": counts,
            "unscheduled": dict(sorted(self.unscheduled.items())),
        }


def tiled_reduction(func, vec: int):
    """matmul / conv: C[..., i, j] += A·B over the reduction axes → register-tiled vector FMA.

    Loops S0..Sn-2 (i) Sn-1 (j) R... become  S0.. io jo R... ii(unrolled) ji(vector lanes);
    the accumulator tile [ii, ji] lives in a local buffer written back once per (io, jo)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    reductions = [b for b in blocks if "R" in _kinds(sch, b)]
    if len(reductions) != 1:
        return None
    block = reductions[0]
    kinds = _kinds(sch, block)
    ns = len(kinds) - len(kinds.lstrip("S"))
    loops = sch.get_loops(block)
    if len(loops) != len(kinds) or ns < 2 or set(kinds[ns:]) != {"R"}:
        return None
    ext = [_extent(sch, lp) for lp in loops]
    lanes = _lanes(ext[ns - 1], vec)
    if lanes is None or ext[ns - 2] is None:
        return None
    rows = next(r for r in (ROWS, 2, 1) if ext[ns - 2] % r == 0)
    jo, ji = sch.split(loops[ns - 1], [None, lanes])
    io, ii = sch.split(loops[ns - 2], [None, rows])
    sch.reorder(*loops[: ns - 2], io, jo, *loops[ns:], ii, ji)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, jo)
    sch.parallel(sch.fuse(*loops[: ns - 2], io) if ns > 2 else io)
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.decompose_reduction(block, loops[ns])  # last: the update block is no reduction block after it
    for other in blocks:
        if other != block:
            vectorize_block(sch, other, vec)
    return sch


def vectorized_injective(func, vec: int):
    """Element-wise functions (every block all-spatial): each block fused and vectorised."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not blocks or any(set(_kinds(sch, b)) != {"S"} for b in blocks):
        return None
    done = [vectorize_block(sch, b, vec) for b in blocks]
    return sch if any(done) else None


def _dlight_rules():
    from tvm.s_tir import dlight as dl

    return [("dlight.cpu.GEMV", dl.cpu.GEMV()), ("dlight.cpu.Reduction", dl.cpu.Reduction())]


def _has_window_reduction(func) -> bool:
    """A block reducing over ≥ 2 axes (a convolution window: kh, kw[, cin])."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    return any(_kinds(sch, b).count("R") >= 2 for b in sch.get_child_blocks(sch.get_sblock("root")))


def schedule_function(func, target, vec: int) -> tuple[object | None, str]:
    """(scheduled PrimFunc or None, rule name or why none applied)."""
    from tvm import s_tir

    spec = tvm_quadconv.spec_of(func)
    if spec is not None:  # edgedet's fused quadratic conv: its own hand schedule
        return tvm_quadconv.scheduled_quadconv(spec, tvm_quadconv.Tile(lanes=vec)), QUADCONV_RULE
    try:
        sch = s_tir.Schedule(func)
        n_blocks = len(sch.get_child_blocks(sch.get_sblock("root")))
    except Exception:  # no root block: an extern call (e.g. tvm.contrib.sort.topk)
        return None, "no schedulable blocks (an extern call)"
    if n_blocks > MAX_BLOCKS:
        return None, f"{n_blocks} blocks (> {MAX_BLOCKS}): left to TVM's lowering"
    rules: list[tuple[str, Callable]] = [
        ("tiled_matmul", lambda f: tvm_gemm.tiled_matmul(f, vec)),
        ("conv_gemm", lambda f: tvm_gemm.conv_gemm(f, vec)),
        ("tiled_reduction", lambda f: tiled_reduction(f, vec)),
    ]
    if not _has_window_reduction(func):  # dlight's Reduction slows convolutions down 10×
        rules += [(name, lambda f, r=rule: r.apply(f, target, False)) for name, rule in _dlight_rules()]
    rules.append(("vectorized_injective", lambda f: vectorized_injective(f, vec)))
    errors = []
    for name, rule in rules:
        try:
            sch = rule(func)
        except Exception as e:  # a rule that cannot handle this function: try the next one
            errors.append(f"{name}: {type(e).__name__}")
            continue
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is not None:
            return sch.mod["main"].with_attr("tirx.is_scheduled", True), name
    return None, "; ".join(errors) or "no rule matches"


def default_schedule_pass(target, vec: int, report: ScheduleReport):
    """A module pass scheduling every not-yet-scheduled PrimFunc; fills `report`."""
    import tvm
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name="EdgedetDefaultSchedule")
    def _pass(mod, _ctx):
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
                report.tuned.append(gv.name_hint)
                continue
            new, how = schedule_function(func, target, vec)
            if new is None:
                report.unscheduled[gv.name_hint] = how
            else:
                report.applied[gv.name_hint] = how
                updates[gv] = new
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return _pass
