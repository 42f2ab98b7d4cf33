"""Layer-by-layer parity: where an exported graph departs from the model it came from.

Every intermediate tensor of the exported graph is marked as an output and run on the
target runtime; the reference is the graph as PyTorch's exporter wrote it (before edgedet's
rewrites), evaluated in float64 by ONNX's reference evaluator — on the QuadraNet graphs it
matches PyTorch float64 to ~1e-14. Tensors are matched by name and compared in the exported
graph's order with the gate's `atol + rtol·|ref|` bound; the first float tensor beyond it is
the first diverging node (what `polygraphy run --onnx-outputs mark all` shows, against
PyTorch's graph rather than a second runtime). Marking every tensor as an output can keep a
runtime from fusing nodes, so a bug that lives only in a fusion may not reproduce here.
"""

from __future__ import annotations

import multiprocessing
import queue
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedet.exporters import openvino as ovx
from edgedet.exporters import tvm as tx
from edgedet.exporters.parity import Tolerance, compare_output
from edgedet.runtimes import onnxruntime as ort_runtime

TRACE_RUNTIMES = ("onnxruntime", "openvino", "tvm")
_PASS_THROUGH = ("Identity", "Constant", "ConstantOfShape", "Shape")  # no arithmetic: left out of growth rows


@dataclass
class NodeError:
    index: int  # position of the producing node in the exported graph
    node: str
    op: str
    tensor: str
    shape: list[int]
    max_abs_err: float
    max_rel_err: float
    excess: float  # max |got − ref| / (atol + rtol·|ref|)
    max_abs_ref: float
    integer: bool = False


@dataclass
class ParityTrace:
    reference: str
    runtime: str
    precision: str
    tolerance: Tolerance
    nodes: list[NodeError] = field(default_factory=list)
    unmatched: int = 0  # exported tensors with no counterpart in the reference graph
    seconds: float = 0.0

    @property
    def first_divergent(self) -> NodeError | None:
        return next((n for n in self.nodes if not n.integer and n.excess > 1.0), None)

    def growth(self, rows: int = 10) -> list[NodeError]:
        """About `rows` float tensors spread along the graph, plus the first diverging and the worst."""
        floats = [n for n in self.nodes if not n.integer and n.op not in _PASS_THROUGH]
        if not floats:
            return []
        step = max(1, len(floats) // rows)
        pick = {id(n): n for n in floats[::step]}
        pick[id(floats[-1])] = floats[-1]
        for extra in (self.first_divergent, max(floats, key=lambda n: n.excess)):
            if extra is not None:
                pick[id(extra)] = extra
        return sorted(pick.values(), key=lambda n: n.index)

    def lines(self, rows: int = 10) -> list[str]:
        first = self.first_divergent
        head = (
            f"first diverging node: #{first.index} {first.op} '{first.node}' → {first.tensor} "
            f"(max abs {first.max_abs_err:.3g}, {first.excess:.3g}× the bound)"
            if first
            else "no intermediate tensor exceeds the bound"
        )
        out = [
            f"layer-by-layer vs {self.reference}: {len(self.nodes)} tensors compared on {self.runtime} "
            f"({self.precision}), {self.unmatched} without a counterpart; {head}",
            "  error growth along the graph (node #, op, tensor, max abs, max rel, × bound):",
        ]
        for n in self.growth(rows):
            mark = "  ← first over the bound" if n is first else ""
            out.append(
                f"  #{n.index:<5d} {n.op:<20s} {n.tensor[:48]:<48s} {n.max_abs_err:9.3g} "
                f"{n.max_rel_err:9.3g} {n.excess:9.3g}{mark}"
            )
        return out

    def to_json(self) -> dict:
        first = self.first_divergent
        return {
            "reference": self.reference,
            "runtime": self.runtime,
            "precision": self.precision,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "unmatched": self.unmatched,
            "seconds": round(self.seconds, 2),
            "first_divergent": asdict(first) if first else None,
            "nodes": [asdict(n) for n in self.nodes],
        }


def float64_copy(model):
    """The same graph computing in float64: float initialisers, constants, casts and I/O."""
    import onnx
    from onnx import AttributeProto, TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)

    def widen(t) -> None:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))

    def widen_nodes(container) -> None:
        casts = []  # (index, Cast node) for constants that read a function attribute
        for i, n in enumerate(container.node):
            if n.op_type == "Constant":
                a = next((a for a in n.attribute if a.name in ("value_float", "value_floats")), None)
                if a is not None and a.ref_attr_name:  # a function attribute: cast what it gives
                    wide = n.output[0]
                    n.output[0] = f"{wide}__fp32"
                    casts.append((i, helper.make_node("Cast", [n.output[0]], [wide], to=TensorProto.DOUBLE)))
                elif a is not None:
                    v = np.asarray(a.f if a.name == "value_float" else list(a.floats), dtype=np.float64)
                    n.attribute.remove(a)
                    n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(v, "value")))
            for a in n.attribute:
                if a.ref_attr_name:
                    continue
                if a.type == AttributeProto.TENSOR:
                    widen(a.t)
                elif a.type == AttributeProto.GRAPH:
                    widen_nodes(a.g)
                elif n.op_type in ("Cast", "EyeLike", "RandomNormalLike") and a.name in ("to", "dtype"):
                    a.i = TensorProto.DOUBLE if a.i == TensorProto.FLOAT else a.i
        for i, cast in reversed(casts):
            container.node.insert(i + 1, cast)

    for t in out.graph.initializer:
        widen(t)
    for v in [*out.graph.input, *out.graph.output, *out.graph.value_info]:
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    widen_nodes(out.graph)
    for f in out.functions:
        widen_nodes(f)
    return out


def produced_tensors(model) -> list[tuple[int, str, str, str]]:
    """(node index, node name, op type, output tensor) of the main graph, in graph order."""
    return [(i, n.name, n.op_type, o) for i, n in enumerate(model.graph.node) for o in n.output if o]


def mark_outputs(model, names: list[str]):
    """A copy of `model` whose graph also outputs `names` (types from shape inference)."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(out)
        info = {v.name: v for v in inferred.graph.value_info}
    except Exception:  # a graph shape inference cannot follow: outputs get no declared shape
        info = {}
    have = {o.name for o in out.graph.output}
    for name in names:
        if name not in have:
            if name in info:
                out.graph.output.append(info[name])
            else:
                out.graph.output.append(helper.make_empty_tensor_value_info(name))
            have.add(name)
    return out


def _reference_ops() -> list:
    """Replacements for onnx.reference ops that cannot take edgedet's graphs: its GatherElements
    uses numpy.choose, limited to 64 values along the gathered axis."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=None):
            axis = 0 if axis is None else int(axis)
            idx = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, idx, axis=axis),)

    return [GatherElements]


def reference_tensors(model, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """Every tensor of `model` evaluated in float64 by onnx.reference (ONNX Runtime fp32 without
    graph optimisations where the reference evaluator lacks an op)."""
    names = [t for _, _, _, t in produced_tensors(model)]
    try:
        from onnx.reference import ReferenceEvaluator

        wide = float64_copy(model)
        feeds64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}
        values = ReferenceEvaluator(wide, new_ops=_reference_ops()).run(names, feeds64)
        return dict(zip(names, values, strict=True)), "the exporter's graph in float64 (onnx.reference)"
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
    marked = mark_outputs(model, names)
    sess = ort_runtime.session(marked.SerializeToString(), optimize=False)
    outs = [o.name for o in sess.get_outputs()]
    values = dict(zip(outs, sess.run(outs, feeds), strict=True))
    return values, f"the exporter's graph in fp32, ONNX Runtime without optimisations (onnx.reference: {why})"


def runtime_tensors(
    model, names: list[str], feeds: dict[str, np.ndarray], runtime: str, precision: str, threads: int = 1
) -> dict[str, np.ndarray]:
    """`names` of `model` as `runtime` computes them (every one marked as a graph output)."""
    marked = mark_outputs(model, names)
    if runtime == "onnxruntime":
        sess = ort_runtime.session(marked.SerializeToString(), threads)
        outs = [o.name for o in sess.get_outputs()]
        return dict(zip(outs, sess.run(outs, feeds), strict=True))
    if runtime == "openvino":
        # the export's own lowering: edgedet's fused op for every QuadraConv node kept
        ov_model = ovx.convert(marked.SerializeToString(), use_extensions=True, fused=True)
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "trace.xml"
            ovx.save_ir(ov_model, xml, precision)
            compiled = ovx.compile_ir(xml, precision, threads)
            values = ovx.run_compiled(compiled, feeds)
            return {o.get_any_name(): v for o, v in zip(compiled.outputs, values, strict=True)}
    if runtime == "tvm":
        with tempfile.TemporaryDirectory() as tmp:
            lib = Path(tmp) / "trace.so"
            tx.build_library(marked, tx.TARGETS["host"], lib)
            values = tx.run_library(lib, [feeds[i.name] for i in marked.graph.input if i.name in feeds])
        return {o.name: v for o, v in zip(marked.graph.output, values, strict=True)}
    raise ValueError(f"no layer-by-layer trace for runtime {runtime} (choose {', '.join(TRACE_RUNTIMES)})")


def trace(
    reference_model,
    exported_model,
    feeds: dict[str, np.ndarray],
    runtime: str,
    precision: str,
    tolerance: Tolerance,
    threads: int = 1,
) -> ParityTrace:
    """Compare every tensor the exported graph shares with the reference graph, in graph order."""
    t0 = time.perf_counter()
    ref, engine = reference_tensors(reference_model, feeds)
    produced = [p for p in produced_tensors(exported_model) if p[3] in ref]
    names = [t for _, _, _, t in produced]
    got = runtime_tensors(exported_model, names, feeds, runtime, precision, threads)
    res = ParityTrace(engine, runtime, precision, tolerance)
    res.unmatched = len(produced_tensors(exported_model)) - len(produced)
    for index, node, op, tensor in produced:
        if tensor not in got:  # a runtime may fold a marked constant away
            res.unmatched += 1
            continue
        r = np.asarray(ref[tensor])
        g = np.asarray(got[tensor])
        if r.dtype == np.float64 and g.dtype != np.float64:
            g = g.astype(np.float64)
        e = compare_output(tensor, r, g, tolerance)
        res.nodes.append(
            NodeError(
                index,
                node,
                op,
                tensor,
                e.shape,
                e.max_abs_err,
                e.max_rel_err,
                e.excess,
                e.max_abs_ref,
                integer=e.mismatches is not None,
            )
        )
    res.seconds = time.perf_counter() - t0
    return res


def _child(conn, args) -> None:
    import onnx

    ref_bytes, exp_bytes, feeds, runtime, precision, tol, threads = args
    try:
        res = trace(onnx.load_from_string(ref_bytes), onnx.load_from_string(exp_bytes), feeds, runtime, precision,
                    tol, threads)
        conn.put(("ok", res))
    except Exception as e:
        conn.put(("error", f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1][:300]}"))


def trace_within(
    reference_model,
    exported_model,
    feeds: dict[str, np.ndarray],
    runtime: str,
    precision: str,
    tolerance: Tolerance,
    seconds: float,
    threads: int = 1,
) -> ParityTrace | str:
    """`trace` in a child process stopped after `seconds`; a string says why there is no trace."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    args = (
        reference_model.SerializeToString(),
        exported_model.SerializeToString(),
        feeds,
        runtime,
        precision,
        tolerance,
        threads,
    )
    p = ctx.Process(target=_child, args=(q, args), daemon=True)
    p.start()
    try:
        status, value = q.get(timeout=seconds)
    except queue.Empty:
        p.kill()
        p.join()
        return f"the layer-by-layer trace did not finish within {seconds:g} s (--debug-parity-s raises the cap)"
    p.join()
    return value if status == "ok" else f"the layer-by-layer trace failed: {value}"
