"""`edgedet reproduce tvm`: how fast edgedet's TVM artifacts are against ONNX Runtime and OpenVINO.

For each model (QuadraNet25-xxs, QuadraNet25-t, the small ResNet-like `resnet-bn`), batch 1,
fp32, on this CPU with the same thread count for every runtime:
  tvm-generic     TVM `host-generic`: featureless llvm target, no schedules (the old build);
  tvm-fused       TVM `host` (this CPU's -mcpu/-mattr) with edgedet's default schedules and the
                  fused quadratic-conv kernel;
  tvm-decomposed  the same, with the quadratic conv inlined to standard ops (`--decompose`);
  onnxruntime     ONNX Runtime CPU EP (the ONNX export, QuadraConv as local functions);
  openvino        OpenVINO CPU plugin, fp32 hint, edgedet's fused QuadraConv extension;
  tvm-tuned-<S>   (with `tune_budgets`) `tvm-fused` tuned by MetaSchedule from an empty record
                  cache for S seconds (≤ `tune_trials` per task, heaviest tasks first); a task's
                  record is used only where it beat the default schedule (tvm_tuning).
Each variant is built once (TVM build and tuning wall time recorded) and checked against the
float64 PyTorch model (scaled max |err|); latencies are the median over interleaved rounds (every
round runs every variant `inner` times).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgedet.cpu import cpu_model, vector_isa
from edgedet.exporters import onnx as onnx_export
from edgedet.exporters import openvino as ovx
from edgedet.exporters import tvm as tvmx
from edgedet.exporters import tvm_tuning
from edgedet.exporters.prepare import prepare
from edgedet.models import create
from edgedet.runtimes import onnxruntime as ort_runtime

SCHEMA_VERSION = 1
MODELS = {"quadranet25-xxs": 224, "quadranet25-t": 224, "resnet-bn": 64}
QUICK_MODELS = {"quadranet25-xxs": 64, "resnet-bn": 32}
VARIANTS = ("tvm-generic", "tvm-fused", "tvm-decomposed", "onnxruntime", "openvino")
PARITY = 1e-4


@dataclass
class Row:
    """One measured variant of one model (batch 1, fp32)."""

    model: str
    input_size: int
    variant: str
    runtime: str
    target: str
    threads: int
    latency_ms: float
    parity: float  # max |out - ref| / max(1, max |ref|), ref = float64 PyTorch
    parity_ok: bool
    build_s: float | None = None
    tuning: str = "untuned"
    batch: int = 1
    precision: str = "fp32"
    measured: bool = True
    tune_budget_s: float | None = None  # tvm-tuned-<S> rows: the budget, the wall time tuning took,
    tune_s: float | None = None  # tasks tuned and those whose tuning record beat the default
    tasks_tuned: int | None = None
    tuned_records_used: int | None = None


def _scaled(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max())))


class _TvmRun:
    """A loaded TVM library with its input set: one call = one inference."""

    def __init__(self, path: Path, x: np.ndarray):
        import tvm
        from tvm import relax

        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
        self.vm.set_input("main", tvm.runtime.tensor(x))

    def __call__(self):
        self.vm.invoke_stateful("main")

    def output(self) -> np.ndarray:
        return tvmx._outputs(self.vm.get_outputs("main"))[0]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _tvm_variants(onnx_model, x: np.ndarray, folder: Path, threads: int, skip_generic: bool):
    """name → (runner, build seconds, target name)."""
    out = {}
    plan = [("tvm-fused", "host", True), ("tvm-decomposed", "host", False)]
    if not skip_generic:
        plan.insert(0, ("tvm-generic", "host-generic", True))
    for name, target, fused in plan:
        path = folder / f"{name}.so"
        report = tvmx.build_library(onnx_model, tvmx.get_target(target, threads), path, fused=fused)
        _log(f"built {name} ({target}) in {report.seconds:.1f} s")
        out[name] = (_TvmRun(path, x), report.seconds, target)
    return out


def _tuned_variants(onnx_model, x: np.ndarray, folder: Path, threads: int, budgets: tuple[float, ...],
                    trials: int) -> dict:
    """name → (runner, build seconds, target, tuning facts) for each budget, each tuned from scratch."""
    out = {}
    target = tvmx.get_target("host", threads)
    for budget in budgets:
        name = f"tvm-tuned-{budget:g}"
        art = folder / name
        art.mkdir()
        mod = tvmx.import_onnx(onnx_model)
        t0 = time.perf_counter()
        db, res = tvm_tuning.tune(mod, target, trials, budget, log=_log, cache=art / "cache")
        winners = res.winners()
        tvm_tuning.export_database(db, mod, target, art, keep=lambda task, w=winners: task.task_name in w)
        tune_s = time.perf_counter() - t0
        report = tvmx.build_library(onnx_model, target, art / "model.so", database=tvm_tuning.load_database(art))
        _log(f"built {name}: tuned {len(res.tasks)} tasks in {tune_s:.0f} s, {len(winners)} records beat the default")
        facts = {"tuning": report.tuning, "tune_budget_s": budget, "tune_s": round(tune_s, 1),
                 "tasks_tuned": len(res.tasks), "tuned_records_used": len(winners)}
        out[name] = (_TvmRun(art / "model.so", x), report.seconds, "host", facts)
    return out


def _ort(onnx_bytes: bytes, x: np.ndarray, input_name: str, threads: int):
    sess = ort_runtime.session(onnx_bytes, threads)
    feeds = {input_name: x}
    return (lambda: sess.run(None, feeds)), (lambda: sess.run(None, feeds)[0])


def _openvino(onnx_bytes: bytes, x: np.ndarray, input_name: str, threads: int, folder: Path):
    import openvino as ov

    xml = folder / "model.xml"
    ovx.save_ir(ovx.convert(onnx_bytes, fused=True), xml, "fp32")
    compiled = ovx.compile_ir(xml, "fp32", threads)
    req = compiled.create_infer_request()
    req.set_tensor(input_name, ov.Tensor(x))
    return req.infer, (lambda: np.asarray(req.get_output_tensor(0).data).copy())


def interleaved(runs: dict, rounds: int, inner: int) -> dict[str, float]:
    """Median over rounds of the mean ms per inference; each round runs every variant."""
    times: dict[str, list[float]] = {n: [] for n in runs}
    for f in runs.values():
        f()
        f()
    for _ in range(rounds):
        for name, f in runs.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner * 1e3)
    return {n: statistics.median(v) for n, v in times.items()}


def measure_model(model: str, size: int, threads: int, rounds: int, inner: int, skip_generic: bool,
                  tune_budgets: tuple[float, ...] = (), tune_trials: int = 32) -> list[Row]:
    """Build every variant of `model` at `size` (and a tuned one per budget), check parity, time
    them interleaved."""
    import torch

    torch.manual_seed(0)
    form = prepare(create(model).eval(), size)
    ex = onnx_export.export_onnx(form.module, form.example(1, 0), form.input_names, form.output_names)
    x = form.example(1, 1)[0].numpy()
    with torch.no_grad():
        ref = form.reference.double()(torch.from_numpy(x).double()).numpy()
    name = form.input_names[0]
    _log(f"{model} {size}: exported")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tvms = {n: (*v, {}) for n, v in _tvm_variants(ex.model, x, folder, threads, skip_generic).items()}
        tvms.update(_tuned_variants(ex.model, x, folder, threads, tune_budgets, tune_trials))
        runs = {n: v[0] for n, v in tvms.items()}
        outputs = {n: v[0].output for n, v in tvms.items()}
        for r in runs.values():
            r()
        runs["onnxruntime"], outputs["onnxruntime"] = _ort(ex.serialize(), x, name, threads)
        runs["onnxruntime"]()
        runs["openvino"], outputs["openvino"] = _openvino(ex.serialize(), x, name, threads, folder)
        runs["openvino"]()
        errs = {n: _scaled(get(), ref) for n, get in outputs.items()}
        _log(f"{model} {size}: sessions ready, timing {len(runs)} variants × {rounds} rounds")
        ms = interleaved(runs, rounds, inner)
    rows = []
    for n in runs:
        build_s, target, facts = (tvms[n][1], tvms[n][2], tvms[n][3]) if n in tvms else (None, "cpu", {})
        runtime = "tvm" if n in tvms else n
        rows.append(Row(model, size, n, runtime, target, threads, ms[n], errs[n], errs[n] <= PARITY,
                        None if build_s is None else round(build_s, 2), **facts))
    return rows


def summarize(rows: list[Row]) -> dict:
    """Per model: fused/decomposed speed-up, TVM fused vs ONNX Runtime, features vs featureless."""
    out = {}
    for model in dict.fromkeys(r.model for r in rows):
        ms = {r.variant: r.latency_ms for r in rows if r.model == model}
        s = {"fused_speedup_over_decomposed": ms["tvm-decomposed"] / ms["tvm-fused"],
             "tvm_fused_over_onnxruntime": ms["tvm-fused"] / ms["onnxruntime"],
             "tvm_fused_over_openvino": ms["tvm-fused"] / ms["openvino"]}
        if "tvm-generic" in ms:
            s["featured_speedup_over_generic"] = ms["tvm-generic"] / ms["tvm-fused"]
        for v in ms:
            if v.startswith("tvm-tuned-"):
                s[f"{v.replace('-', '_')}_over_onnxruntime"] = ms[v] / ms["onnxruntime"]
                s[f"{v.replace('-', '_')}_speedup_over_fused"] = ms["tvm-fused"] / ms[v]
        out[model] = {k: round(v, 3) for k, v in s.items()}
    return out


def run(models: dict[str, int], threads: int, rounds: int, inner: int, generic_max_size: int = 64,
        tune_budgets: tuple[float, ...] = (), tune_trials: int = 32) -> dict:
    """The whole suite: rows for every model and variant, the summary, the machine and its load.
    `tvm-generic` (seconds per QuadraNet25-t inference) is run only at sizes ≤ generic_max_size
    and for QuadraNet25-xxs; `tune_budgets` (seconds) add one tuned row each."""
    load_before = os.getloadavg()
    rows: list[Row] = []
    for model, size in models.items():
        skip = size > generic_max_size and model != "quadranet25-xxs"
        rows += measure_model(model, size, threads, rounds, inner, skip, tune_budgets, tune_trials)
    tuning = ("none: every TVM row is untuned (default schedules or none)" if not tune_budgets else
              f"tvm-tuned-<S> rows: MetaSchedule from an empty cache for S s, ≤ {tune_trials} trials per task, "
              "records used only where faster than the default schedule; the other TVM rows are untuned")
    return {
        "schema_version": SCHEMA_VERSION,
        "device": {"cpu": cpu_model(), "isa": vector_isa().best, "cores": os.cpu_count()},
        "method": (f"batch 1, fp32, {threads} thread(s) in every runtime (TVM_NUM_THREADS, ORT intra-op, "
                   f"OpenVINO INFERENCE_NUM_THREADS); median of {rounds} interleaved rounds of {inner} "
                   "inferences; parity = max|err| / max(1, max|ref|) against float64 PyTorch"),
        "tuning": tuning,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "rows": [asdict(r) for r in rows],
        "summary": summarize(rows),
    }


def print_table(doc: dict) -> None:
    print(f"{doc['device']['cpu']} ({doc['device']['isa']}) — {doc['method']}")
    print(f"{'model':<18}{'size':>5}  {'variant':<16}{'ms':>10}{'parity':>10}{'build s':>9}{'tune s':>8}")
    for r in doc["rows"]:
        build = "" if r["build_s"] is None else f"{r['build_s']:.1f}"
        flag = "" if r["parity_ok"] else "  PARITY FAIL"
        tune = "" if r.get("tune_s") is None else f"{r['tune_s']:.0f}"
        print(f"{r['model']:<18}{r['input_size']:>5}  {r['variant']:<16}{r['latency_ms']:>10.2f}"
              f"{r['parity']:>10.1e}{build:>9}{tune:>8}{flag}")
    for model, s in doc["summary"].items():
        print(model + ": " + ", ".join(f"{k} {v:.2f}×" for k, v in s.items()))
