"""`edgedet reproduce kernels`: edgedet's fused quadratic conv against the decomposed forms.

(Last part: PyTorch training steps of QuadraNet25-xxs with edgedet's CPU op vs without.)

In OpenVINO (CPU plugin, fp32), for QuadraNet25-t's layer shapes at 224 (k=7 unless
`--kernels` says otherwise) and for the whole QuadraNet25-t:
  fused       edgedet's extension op `edgedet.QuadraConv` (one pass, three accumulators);
  decomposed  three depthwise GroupConvolutions + Multiply + Add + bias (today's lowering);
  grouped     one GroupConvolution with 3C outputs, split, Multiply + Add + bias.
Each variant is compiled once; timings are interleaved rounds (each round runs every variant
`--inner` times), medians over rounds. Speed ratio = best decomposed time / fused time.
Bytes moved and FLOPs per variant are counted analytically (fp32, each tensor read or written
once per op that touches it). Parity of every variant against PyTorch float64.
The same per-layer rows in TVM host and PyTorch eager, at 1 thread and all, with their roofline
fractions: `kernels_layers` (variants in `kernels_tvm`, `kernels_torch`; rows by `layer_row`).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgedet.exporters import onnx as onnx_export
from edgedet.exporters import openvino as ovx
from edgedet.exporters.prepare import prepare
from edgedet.exporters.quadraconv_onnx import DOMAIN, OP_TYPE, quadraconv_function
from edgedet.kernels import QuadraConv2d, openvino_extension, quadratic_conv2d, torch_extension
from edgedet.models import create

SCHEMA_VERSION = 1
MODEL = "quadranet25-t"
VARIANTS = ("fused", "decomposed", "grouped")


def layer_shapes(model: str = MODEL, input_size: int = 224) -> list[tuple[int, int, int, int]]:
    """Distinct (C, H, k, stride) of the model's QuadraConv layers at `input_size` (stride 1)."""
    import torch

    net = create(model).eval()
    seen: dict[tuple, None] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.setdefault((m.channels, i[0].shape[-1], m.kernel_size,
                                                                     m.stride)))
             for m in net.modules() if isinstance(m, QuadraConv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    return list(seen)


def layer_onnx(c: int, h: int, k: int, weights: list[np.ndarray], with_function: bool = False):
    """ModelProto of one `edgedet.QuadraConv` node (x: (1,C,H,H)) with its weights as initializers;
    `with_function` adds the node's standard-op ONNX function (what an edgedet ONNX export carries)."""
    from onnx import TensorProto, helper, numpy_helper

    pad = (k - 1) // 2
    names = ["wa", "wb", "wc", "bias"]
    node = helper.make_node(OP_TYPE, ["x", *names], ["y"], domain=DOMAIN, strides=[1, 1], pads=[pad] * 4,
                            dilations=[1, 1], group=c)
    graph = helper.make_graph([node], "quadraconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                     [1, c, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, h])],
                              [numpy_helper.from_array(w, n) for w, n in zip(weights, names, strict=True)])
    return helper.make_model(graph, functions=[quadraconv_function()] if with_function else [],
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def _grouped_model(c: int, h: int, k: int, weights: list[np.ndarray]):
    """One GroupConvolution with 3C outputs ([a_i, b_i, c_i] per channel), split, a·b + c + bias."""
    import openvino as ov
    import openvino.opset13 as ops

    wa, wb, wc, bias = weights
    w3 = np.stack([wa, wb, wc], axis=1).reshape(c, 3, 1, k, k)  # [G, O/G, I/G, k, k]
    x = ops.parameter([1, c, h, h], np.float32, name="x")
    pad = (k - 1) // 2
    y3 = ops.group_convolution(x, ops.constant(w3), [1, 1], [pad, pad], [pad, pad], [1, 1])
    parts = ops.split(ops.reshape(y3, ops.constant(np.array([1, c, 3, h, h], np.int64)), False),
                      ops.constant(np.int64(2)), 3)
    y = ops.add(ops.multiply(parts.output(0), parts.output(1)), parts.output(2))
    y = ops.add(ops.reshape(y, ops.constant(np.array([1, c, h, h], np.int64)), False),
                ops.constant(bias.reshape(1, c, 1, 1)))
    return ov.Model([y], [x], "quadraconv_grouped")


def _compile(model, threads: int, extension: bool):
    core = openvino_extension.core_for(library=openvino_extension.build().library if extension else None)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(model, "CPU", config)


def layer_data(c: int, h: int, k: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """x (1,C,H,H) and [wa, wb, wc (C,1,k,k), bias (C,)], fp32, the same for every runtime."""
    rng = np.random.default_rng(seed)
    s = k**-1.0
    weights = [rng.normal(0, s, (c, 1, k, k)).astype(np.float32) for _ in range(3)]
    weights.append(rng.normal(0, 0.1, c).astype(np.float32))
    x = rng.normal(0, 1, (1, c, h, h)).astype(np.float32)
    return x, weights


def _layer_variants(c: int, h: int, k: int, threads: int, seed: int):
    """(variants name → compiled model, x, weights) for one layer shape."""
    x, weights = layer_data(c, h, k, seed)
    data = layer_onnx(c, h, k, weights).SerializeToString()
    compiled = {"fused": _compile(ovx.convert(data, fused=True), threads, True),
                "decomposed": _compile(ovx.convert(data, fused=False), threads, False),
                "grouped": _compile(_grouped_model(c, h, k, weights), threads, False)}
    return compiled, x, weights


def reference(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    import torch

    t = [torch.from_numpy(w).double() for w in weights]
    with torch.no_grad():
        return quadratic_conv2d(torch.from_numpy(x).double(), *t, memory_saving=False).numpy()


def weight_bytes(c: int, k: int) -> int:
    """fp32 bytes of wa, wb, wc (C,1,k,k) and bias (C,)."""
    return 4 * (3 * c * k * k + c)


def layer_cost(c: int, h: int, k: int) -> dict[str, dict[str, int]]:
    """Analytic FLOPs and fp32 bytes moved per variant (weights included)."""
    n = c * h * h
    wbytes = weight_bytes(c, k)
    conv = 2 * n * k * k
    return {
        "fused": {"flops": 3 * conv + 3 * n, "bytes": 4 * 2 * n + wbytes},  # read x, write y
        # three convs (read x, write one each), mul (2 in, 1 out), add (2 in, 1 out), bias add (1 in, 1 out)
        "decomposed": {"flops": 3 * conv + 3 * n, "bytes": 4 * (3 * 2 * n + 3 * n + 3 * n + 2 * n) + wbytes},
        # one conv (read x, write 3C), split views, mul, add, bias add
        "grouped": {"flops": 3 * conv + 3 * n, "bytes": 4 * (n + 3 * n + 3 * n + 3 * n + 2 * n) + wbytes},
    }


def interleaved(requests: dict, rounds: int, inner: int) -> dict[str, float]:
    """Median over rounds of the mean ms per inference; every round runs every variant."""
    times: dict[str, list[float]] = {n: [] for n in requests}
    for r in requests.values():  # warm-up
        for _ in range(max(2, inner // 2)):
            r.infer()
    for _ in range(rounds):
        for name, r in requests.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                r.infer()
            times[name].append((time.perf_counter() - t0) / inner * 1e3)
    return {n: statistics.median(v) for n, v in times.items()}


def _bind(compiled, feeds: dict[str, np.ndarray]):
    import openvino as ov

    req = compiled.create_infer_request()
    for name, value in feeds.items():
        req.set_tensor(name, ov.Tensor(value))
    return req


class _OvRunner:
    """A compiled OpenVINO variant bound to x: `infer()` runs an infer request, `output()` y."""

    def __init__(self, compiled, x: np.ndarray):
        self._compiled, self._x = compiled, x
        self._req = _bind(compiled, {"x": x})

    def infer(self) -> None:
        self._req.infer()

    def output(self) -> np.ndarray:
        return np.asarray(self._compiled({"x": self._x})[self._compiled.outputs[0]])


def layer_row(runtime: str, c: int, h: int, k: int, threads: int, runners: dict, x: np.ndarray,
              weights: list[np.ndarray], rounds: int, inner: int) -> dict:
    """One `quadconv` row: parity of each runner (`infer()`, `output()`) against float64, then
    interleaved timings, analytic cost and the speed ratio best decomposed / fused."""
    ref = reference(x, weights)
    errs = {n: float(np.abs(r.output() - ref).max()) for n, r in runners.items()}
    ms = interleaved(runners, rounds, inner)
    cost = layer_cost(c, h, k)
    best = min(("decomposed", "grouped"), key=lambda n: ms[n])
    return {
        "runtime": runtime, "shape": [1, c, h, h], "kernel": k, "threads": threads,
        "latency_ms": ms, "max_abs_err": errs, "max_abs_ref": float(np.abs(ref).max()),
        "flops": {n: v["flops"] for n, v in cost.items()}, "bytes": {n: v["bytes"] for n, v in cost.items()},
        "gflops_per_s": {n: cost[n]["flops"] / ms[n] / 1e6 for n in ms},
        "best_decomposed": best, "speedup": ms[best] / ms["fused"],
    }


def measure_layers(shapes, threads: int, rounds: int, inner: int, seed: int = 0) -> list[dict]:
    """OpenVINO rows (CPU plugin, fp32, INFERENCE_NUM_THREADS = `threads`) for the stride-1 shapes."""
    rows = []
    for c, h, k, stride in shapes:
        if stride != 1:
            continue
        compiled, x, weights = _layer_variants(c, h, k, threads, seed)
        runners = {n: _OvRunner(m, x) for n, m in compiled.items()}
        rows.append(layer_row("openvino", c, h, k, threads, runners, x, weights, rounds, inner))
    return rows


def measure_model(model: str, input_size: int, threads: int, rounds: int, inner: int) -> dict:
    """Whole-model latency in OpenVINO with the fused op vs the three-GroupConvolution lowering."""
    import torch

    torch.manual_seed(0)
    form = prepare(create(model).eval(), input_size)
    ex = onnx_export.export_onnx(form.module, form.example(1, 0), form.input_names, form.output_names)
    x = form.example(1, 1)[0].numpy()
    with torch.no_grad():
        ref = form.reference(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        compiled = {}
        for name, fused in (("fused", True), ("decomposed", False)):
            xml = Path(tmp) / f"{name}.xml"
            ovx.save_ir(ovx.convert(ex.serialize(), fused=fused), xml, "fp32")
            compiled[name] = ovx.compile_ir(xml, "fp32", threads)
        feeds = {form.input_names[0]: x}
        errs = {n: float(np.abs(ovx.run_compiled(m, feeds)[0] - ref).max()) for n, m in compiled.items()}
        ms = interleaved({n: _bind(m, feeds) for n, m in compiled.items()}, rounds, inner)
        profile = {n: node_type_ms(Path(tmp) / f"{n}.xml", feeds, threads) for n in compiled}
    quad = {"fused": profile["fused"].get("Reference", 0.0), "decomposed": profile["decomposed"].get(
        "GroupConvolution", 0.0)}
    share = quad["decomposed"] / sum(profile["decomposed"].values())
    return {"runtime": "openvino", "model": model, "input_size": input_size, "batch": 1, "threads": threads,
            "latency_ms": ms, "max_abs_err": errs, "ratio": ms["decomposed"] / ms["fused"],
            "profile_ms": profile, "quadconv_ms": quad, "quadconv_share_decomposed": share,
            "amdahl_bound": 1.0 / (1.0 - share * (1.0 - quad["fused"] / quad["decomposed"]))
            if quad["decomposed"] else None}


def node_type_ms(xml: Path, feeds: dict, threads: int, runs: int = 3) -> dict[str, float]:
    """CPU-plugin time per executed node type (PERF_COUNT), median over `runs` inferences. The
    fused op runs as a `Reference` node; the decomposed QuadraConv as `GroupConvolution`s with
    the Multiply/Adds fused into them."""

    core = openvino_extension.core_for(xml)
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True})
    req = compiled.create_infer_request()
    req.infer(feeds)
    per_run = []
    for _ in range(runs):
        req.infer(feeds)
        agg: dict[str, float] = {}
        for p in req.profiling_info:
            agg[p.node_type] = agg.get(p.node_type, 0.0) + p.real_time.total_seconds() * 1e3
        per_run.append(agg)
    return {k: statistics.median(r.get(k, 0.0) for r in per_run) for k in per_run[0]}


def measure_torch_train(model: str, input_size: int, batch: int, threads: int, rounds: int,
                        steps: int = 3) -> dict:
    """PyTorch training steps (forward, backward, SGD) with edgedet's CPU op vs the reference
    grouped-conv Function: the first `steps` losses of each (same seed, same data) and the
    step time, interleaved rounds, medians."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    op = torch_extension.load()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, input_size, input_size, generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)

    def use(on: bool) -> None:  # the op is picked per call in quadratic_conv2d
        torch_extension._MODULE, torch_extension._CHECKED = (op if on else None), True

    def step(m, opt) -> float:
        opt.zero_grad()
        loss = F.cross_entropy(m(x), labels)
        loss.backward()
        opt.step()
        return float(loss.detach())

    runs, losses = {}, {}
    try:
        for name in ("fused", "reference"):
            use(name == "fused")
            torch.manual_seed(0)
            m = create(model, num_classes=10)
            opt = torch.optim.SGD(m.parameters(), lr=0.05)
            losses[name] = [step(m, opt) for _ in range(steps)]
            runs[name] = (m, opt)
        times: dict[str, list[float]] = {n: [] for n in runs}
        for _ in range(rounds):
            for name, (m, opt) in runs.items():
                use(name == "fused")
                t0 = time.perf_counter()
                step(m, opt)
                times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        use(True)
    ms = {n: statistics.median(v) for n, v in times.items()}
    return {"runtime": "torch", "model": model, "input_size": input_size, "batch": batch, "threads": threads,
            "step_ms": ms, "losses": losses, "ratio": ms["reference"] / ms["fused"]}


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _print(con, doc: dict) -> None:
    from rich.table import Table

    t = Table(title=f"edgedet's fused quadratic conv per layer — {doc['method']}")
    for col in ("runtime", "threads", "shape", "k", *[f"{v} ms" for v in VARIANTS], "fused GFLOP/s",
                "fused roofline", "speedup", "fused err"):
        t.add_column(col, justify="right")
    for r in doc["quadconv"]:
        ms = r["latency_ms"]
        roof = r.get("roofline", {}).get("fraction", {}).get("fused")
        t.add_row(r["runtime"], str(r["threads"]), "×".join(map(str, r["shape"])), str(r["kernel"]),
                  *[f"{ms[v]:.3f}" for v in VARIANTS], f"{r['gflops_per_s']['fused']:.1f}",
                  "" if roof is None else f"{100 * roof:.0f}%", f"{r['speedup']:.2f}×",
                  f"{r['max_abs_err']['fused']:.1e}")
    con.print(t)
    s = doc["summary"]
    ceilings = s.get("quadconv_k7_ceiling_by_runtime_threads") or {}
    for rt, by_t in (s.get("quadconv_k7_geomean_speedup_by_runtime_threads") or {}).items():
        cap = ceilings.get(rt, {})
        parts = [f"{g:.2f}× at {t} thread(s)" + (f" (roofline ceiling {cap[t]:.2f}×)" if cap.get(t) else "")
                 for t, g in by_t.items() if g is not None]
        con.print(f"k=7 geomean speedup (best decomposed / fused), {rt}: " + ", ".join(parts))
    if doc["model"]:
        m = doc["model"]
        con.print(f"{m['model']} at {m['input_size']}: fused {m['latency_ms']['fused']:.2f} ms, decomposed "
                  f"{m['latency_ms']['decomposed']:.2f} ms → {m['ratio']:.2f}× (max abs err fused "
                  f"{m['max_abs_err']['fused']:.1e}, decomposed {m['max_abs_err']['decomposed']:.1e})")
        q = m["quadconv_ms"]
        con.print(f"  per-node profile: QuadraConv {q['fused']:.1f} ms fused vs {q['decomposed']:.1f} ms "
                  f"GroupConvolution, {100 * m['quadconv_share_decomposed']:.0f}% of the decomposed model; "
                  f"model ratio if only those nodes changed {m['amdahl_bound']:.2f}×; largest: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(m["profile_ms"]["decomposed"].items(),
                                                            key=lambda kv: -kv[1])[:3]))
    if doc.get("torch_train"):
        tr = doc["torch_train"]
        con.print(f"PyTorch training step {tr['model']} (batch {tr['batch']}, {tr['input_size']}²): CPU op "
                  f"{tr['step_ms']['fused']:.0f} ms vs reference {tr['step_ms']['reference']:.0f} ms → "
                  f"{tr['ratio']:.2f}×; losses {tr['losses']['fused']} vs {tr['losses']['reference']}")
    if doc.get("boxrpb_memory"):
        mem = doc["boxrpb_memory"]
        g = mem["growth"]
        khw = {phase: f["coef_bytes"]["KHW"] for phase, f in mem["fit"].items()}
        worst = max(f["max_rel_residual"] for f in mem["fit"].values())
        con.print(f"BoxRPB node memory beyond its inputs ({len(doc['boxrpb'])} sizes, fit residual "
                  f"≤ {100 * worst:.1f}%): fused grows as {g['fused']} (bytes per K·H·W: bias {khw['bias']:.0f}, "
                  f"attention {khw['attention_fused']:.0f}), "
                  f"PyTorch as {g['torch']} ({khw['attention_torch']:.0f} bytes per K·H·W)")
    if doc.get("boxrpb_openvino"):
        bo = doc["boxrpb_openvino"]
        khw = {f: v["coef_bytes"]["KHW"] for f, v in bo["fit"].items()}
        con.print(f"BoxRPB OpenVINO node: speed ratio geomean {bo['speedup_geomean']:.2f}× "
                  f"(decomposed / fused); added memory per K·H·W: fused {khw['fused']:.1f} B, decomposed "
                  f"{khw['decomposed']:.1f} B → fused grows as {bo['growth']['fused']}")
    con.print(f"load average before {doc['load_average']['before'][0]:.2f}, "
              f"after {doc['load_average']['after'][0]:.2f} (2 cores shared)")
