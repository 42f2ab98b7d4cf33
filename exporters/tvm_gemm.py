"""Register-tiled GEMM schedules for the two kinds of dense CPU TIR function that dominate a
QuadraNet / CNN build: token matmuls (the MLP's pointwise layers, with their bias + GELU
epilogue) and dense convolutions (stem / downsample patchify convs) computed as a GEMM.

Both rules compute an output tile of `rows` × `cols` (cols = 2 vectors of fp32 lanes: 8
accumulator registers at AVX2 width) in a local accumulator, with the reduction loops
outside the unrolled rows and the vector lanes, so each step of the reduction is `rows`
broadcasts, `cols / lanes` vector loads and `rows · cols / lanes` FMAs:

* `tiled_matmul` — C[m, n] = Σ_k A[m, k] · B[k, n] with any number of leading spatial axes:
  they are fused into m (the intermediate output buffer flattened to 2-D so each tile's
  write-back region is exact); the column strip loop is outermost so B's strip (K × cols)
  stays in L1 while all rows pass over it (B packed per call into those strips); the element-wise
  epilogue blocks are inlined into the last one, computed per tile right after its write-back.
* `conv_gemm` — NCHW conv2d (dense, and also the decomposed quadratic conv's depthwise ones, whose
  input is then gathered per lane): output channels are the vector lanes (the weights
  repacked per call to [co/cols, ci, kh, kw, cols] so the lanes are contiguous), output
  columns are the register rows, (ci, kh, kw) the reduction; the padding block inlined.
"""

from __future__ import annotations

import math

VECTORS = 2  # vector registers per tile row: rows × VECTORS accumulators
ROWS = 4
LOCAL_KINDS = {0: "S", 2: "R"}  # IterVar.iter_type: DataPar, CommReduce


def block_kinds(sch, block) -> str:
    """The block's iteration kinds: "S" spatial, "R" reduction, "O" other, e.g. "SSSR"."""
    return "".join(LOCAL_KINDS.get(int(iv.iter_type), "O") for iv in sch.get(block).iter_vars)


_kinds = block_kinds


def loop_extent(sch, loop) -> int | None:
    """A loop's constant extent, None when symbolic."""
    ext = sch.get(loop).extent
    return int(ext) if hasattr(ext, "value") or isinstance(ext, int) else None


def _extents(sch, loops) -> list[int] | None:
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        if not hasattr(ext, "value"):
            return None
        out.append(int(ext.value))
    return out


def _cols(n: int, vec: int) -> int | None:
    """Tile width: VECTORS vectors, else one, else None (no vector split of n)."""
    return next((c for c in (VECTORS * vec, vec) if n % c == 0), None)


def vector_lanes(extent: int | None, vec: int) -> int | None:
    """The widest vector split (vec, vec/2, … ≥ 4) that divides `extent`."""
    while extent and vec >= 4:
        if extent % vec == 0:
            return vec
        vec //= 2
    return None


def vectorize_block(sch, block, vec: int) -> bool:
    """Fuse an all-spatial block's loops, vectorise the inner lanes, parallelise the rest."""
    if set(block_kinds(sch, block)) != {"S"}:
        return False
    st = sch.get(block)
    if any(str(r.source.dtype) == "bool" for r in [*st.reads, *st.writes]):
        return False  # TVM's lowering of bool vectors stores int8 lanes into a bool buffer and fails
    loops = sch.get_loops(block)
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    lanes = vector_lanes(loop_extent(sch, fused), vec)
    if lanes is None:
        return False
    outer, inner = sch.split(fused, [None, lanes])
    sch.vectorize(inner)
    sch.parallel(outer)
    return True


def _the_reduction(sch):
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    reductions = [b for b in blocks if "R" in _kinds(sch, b)]
    return (reductions[0], blocks) if len(reductions) == 1 else (None, blocks)


def _param_buffers(func) -> set[str]:
    """Names of the function's parameter buffers (inputs and outputs)."""
    return {str(p.name) for p in func.params}


def _vectorize_rest(sch, later, vec: int) -> None:
    """Inline the element-wise blocks `later` (after the reduction) into the last one; vectorise it."""
    for blk in later[:-1]:
        try:
            sch.compute_inline(blk)
        except Exception:  # e.g. a block other blocks cannot absorb: leave it, vectorise it below
            vectorize_block(sch, blk, vec)
    if later:
        vectorize_block(sch, later[-1], vec)


def tiled_matmul(func, vec: int):
    """S…S R matmul whose B operand is contiguous along the output column (B[k, n])."""
    from tvm import s_tir
    from tvm.tirx import IndexMap

    sch = s_tir.Schedule(func)
    block, blocks = _the_reduction(sch)
    if block is None or blocks.index(block) != 0:
        return None
    kinds = _kinds(sch, block)
    ns = len(kinds) - 1
    loops = sch.get_loops(block)
    if ns < 2 or kinds != "S" * ns + "R" or len(loops) != len(kinds):
        return None
    st = sch.get(block)
    n_var = st.iter_vars[ns - 1].var
    b_reads = [i for i, r in enumerate(st.reads) if r.region[-1].min.same_as(n_var) and len(r.region) == 2]
    if len(b_reads) != 1:
        return None  # B[n, k] (transposed): lanes would gather; tiled_reduction handles it
    ext = _extents(sch, loops)
    if ext is None:
        return None
    cols, m = _cols(ext[ns - 1], vec), math.prod(ext[: ns - 1])
    if cols is None:
        return None
    dims = ext[: ns - 1]
    if ns > 2 and str(st.writes[0].source.name) not in _param_buffers(func):
        # flattened so that a tile of m rows is one box of the buffer
        sch.transform_layout(block, ("write", 0), lambda *ix: (_flat(ix[:-1], dims), ix[-1]))
        # and the block's own domain (m, n, k): the write index simplifies to m, so a tile's
        # write-back region is its rows exactly (not the bounding box of (m // W, m % W))
        to_mnk = IndexMap.from_func(lambda *ix: (_flat(ix[: ns - 1], dims), ix[ns - 1], ix[ns]), ndim=ns + 1)
        sch.transform_block_layout(block, to_mnk)
        loops = sch.get_loops(block)
    elif ns > 2 and math.prod(ext[: ns - 2]) > 1:
        return None  # leading axes cannot be flattened in a parameter buffer
    elif ns > 2:
        loops = [sch.fuse(*loops[: ns - 1]), *loops[ns - 1:]]
    rows = next(r for r in (ROWS, 2, 1) if m % r == 0)
    mm, nn, kk = loops
    io, ii = sch.split(mm, [None, rows])
    jo, ji = sch.split(nn, [None, cols])
    sch.reorder(jo, io, kk, ii, ji)
    packed = sch.cache_read(block, b_reads[0], "global")  # B[k, n] → [n / cols, k, cols]: strips contiguous
    sch.transform_layout(packed, ("write", 0), lambda k, n: (n // cols, k, n % cols))
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, io)
    sch.parallel(jo)
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.decompose_reduction(block, kk)
    later = blocks[1:]
    for blk in later[:-1]:
        sch.compute_inline(blk)
    if later and not _epilogue_into_tile(sch, later[-1], io, dims, ns):
        _vectorize_rest(sch, later[-1:], vec)
    return sch


def _epilogue_into_tile(sch, blk, io, dims, ns: int) -> bool:
    """Compute the (inlined) element-wise epilogue per register tile, right after its write-back,
    while the tile is in L1: its domain flattened to (m, n) like the matmul's."""
    from tvm.tirx import IndexMap

    try:
        if len(dims) > 1:
            sch.transform_block_layout(blk, IndexMap.from_func(lambda *ix: (_flat(ix[:-1], dims), ix[-1]), ndim=ns))
        sch.reverse_compute_at(blk, io)
        sch.vectorize(sch.get_loops(blk)[-1])
        return True
    except Exception:  # e.g. an epilogue with a reduction or a broadcast the map cannot express
        return False


def _flat(ix, dims):
    out = ix[0]
    for i, d in zip(ix[1:], dims[1:], strict=True):
        out = out * d + i
    return out


def conv_gemm(func, vec: int):
    """conv2d_nchw: [pad] → S S S S R R R conv → element-wise epilogue (any groups: the input
    read per lane is a broadcast when dense, a gather when depthwise)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    block, blocks = _the_reduction(sch)
    if block is None or _kinds(sch, block) != "SSSSRRR":
        return None
    st = sch.get(block)
    weights = [i for i, r in enumerate(st.reads) if str(r.source.name) in _param_buffers(func) and len(r.region) == 4
               and r.region[0].min.same_as(st.iter_vars[1].var)]
    if len(weights) != 1:
        return None
    loops = sch.get_loops(block)
    ext = _extents(sch, loops)
    if ext is None:
        return None
    cols = _cols(ext[1], vec)
    rows = next((r for r in (ROWS, 7, 2) if ext[3] % r == 0), 1)
    if cols is None:
        return None
    later = blocks[blocks.index(block) + 1:]
    for blk in blocks[: blocks.index(block)]:
        sch.compute_inline(blk)  # the padding copy: read the input (guarded) directly
    packed = sch.cache_read(block, weights[0], "global")
    sch.transform_layout(packed, ("write", 0), lambda f, c, y, x: (f // cols, c, y, x, f % cols))
    n, f, y, x, rc, ry, rx = loops
    fo, fi = sch.split(f, [None, cols])
    xo, xi = sch.split(x, [None, rows])
    sch.reorder(n, fo, y, xo, rc, ry, rx, xi, fi)
    acc = sch.cache_write(block, 0, "local")
    # the accumulator tile as (x, f), lanes contiguous, so LLVM keeps it in registers: in the
    # output's (f, x) order a two-vector tile became strided stack traffic (6–7 GFLOP/s)
    sch.transform_layout(block, ("write", 0), lambda n_, f_, y_, x_: (n_, y_, x_, f_))
    sch.reverse_compute_at(acc, xo)
    sch.parallel(sch.fuse(n, fo, y))
    sch.unroll(xi)
    sch.vectorize(fi)
    sch.decompose_reduction(block, rc)
    pl = sch.get_loops(packed)
    sch.parallel(pl[0])
    _vectorize_rest(sch, later, vec)
    return sch
