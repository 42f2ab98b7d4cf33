"""One export: model + weights → runtime artifact → parity gate → atomic artifact folder.

`export_artifact(ExportRequest)` is what `edgedet export` and the export-matrix suite call.
Everything is built in a temp folder next to `out`; the folder is renamed into place only
when parity against PyTorch passed, otherwise `ParityFailed` carries the figures, a
layer-by-layer trace (when one fits in its time cap) says where the graph departs, and
nothing is left behind but `<out>.parity-report.json`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgedet import models
from edgedet import precision as precision_names
from edgedet.errors import EdgedetError
from edgedet.exporters import artifact, parity, parity_trace, tvm_artifact, tvm_measure, weights
from edgedet.exporters import onnx as onnx_export
from edgedet.exporters import openvino as ovx
from edgedet.exporters import tensorrt as trtx
from edgedet.exporters.artifact import FORMATS
from edgedet.exporters.onnx import run_onnxruntime
from edgedet.exporters.prepare import custom_ops_in, prepare
from edgedet.exporters.tensorrt import require_tensorrt
from edgedet.exporters.tvm import require_tvm
from edgedet.exporters.tvm_import import FUSED_OP
from edgedet.io.atomic import write_json_atomic
from edgedet.io.checkpoint import load_model_weights
from edgedet.kernels import openvino_extension

# TVM: edgedet ops that reach Relax as a fused kernel rather than inlined (exporters.tvm_import)
TVM_FUSED = {FUSED_OP: "TVM fused kernel (one TE compute, edgedet.quadconv schedule; runtime.fused_ops)"}
PRECISIONS = ("fp32", "fp16", "bf16")  # int8 (post-training quantisation) is not offered yet


class ParityFailed(Exception):
    """The exported model differs from PyTorch beyond the tolerance (only the report was written)."""

    def __init__(self, result: parity.ParityResult, trace=None, report: Path | None = None):
        super().__init__(result.summary())
        self.result = result
        self.trace = trace  # parity_trace.ParityTrace, or a string saying why there is none
        self.report = report


def report_path(out: Path) -> Path:
    """Where a failed export's parity report goes: beside the artifact folder it would have been."""
    out = Path(out)
    return out.parent / f"{out.name}.parity-report.json"


@dataclass
class ExportRequest:
    model: str
    format: str
    out: Path
    checkpoint: Path | None = None
    target: str = "host"
    precision: str = "fp32"
    decompose: bool = False
    # OpenVINO: BoxRPB attention as the extension's fused op (opt-in: measured 0.27x the
    # speed of the default lowering on an AVX2 CPU, docs/export.md)
    fused_boxrpb: bool = False
    dynamic_batch: bool = False
    input_size: int | None = None
    opset: int = 17
    atol: float | None = None  # default: parity.DEFAULT_TOLERANCE[precision]
    rtol: float | None = None
    debug_parity: bool = False  # layer-by-layer trace even when parity passes
    debug_parity_s: float = 120.0  # time cap of the trace (also run when parity fails)
    batches: tuple[int, ...] | None = None
    seed: int = 0
    rpc: str | None = None  # TVM: "host:port" of an RPC server, or "host:port/key" of a tracker (tuning)
    threads: int = 1
    model_overrides: dict = field(default_factory=dict)
    tune_trials: int | None = None  # TVM: MetaSchedule trials per task (None: untuned)
    tune_budget_s: float | None = None  # TVM: wall-clock cap of the tuning

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise EdgedetError(f"unsupported format '{self.format}' (choose {', '.join(FORMATS)})")
        self.precision = precision_names.canonical(self.precision, PRECISIONS)
        if self.precision != "fp32" and self.format in ("onnx", "tvm"):
            raise EdgedetError(
                f"--precision {self.precision} applies to openvino and tensorrt; "
                f"{self.format} exports are fp32"
            )
        if self.precision == "bf16" and self.format == "tensorrt":
            raise EdgedetError("TensorRT engines are built in fp32 or fp16 (bf16 is not offered)")
        if self.target != "host" and self.format != "tvm":
            raise EdgedetError(f"--target {self.target} applies to --format tvm only")
        if self.rpc and self.format != "tvm":
            raise EdgedetError("--rpc applies to --format tvm only")
        if self.fused_boxrpb and (self.format != "openvino" or self.decompose):
            raise EdgedetError("--fused-boxrpb applies to --format openvino without --decompose")
        if (self.tune_trials is not None or self.tune_budget_s is not None) and self.format != "tvm":
            raise EdgedetError("--tune-trials / --tune-budget-s apply to --format tvm only")
        if self.tune_trials is not None and self.tune_trials < 1:
            raise EdgedetError(f"--tune-trials must be at least 1, got {self.tune_trials}")
        if self.tune_budget_s is not None and not self.tune_budget_s > 0:
            raise EdgedetError(f"--tune-budget-s must be positive, got {self.tune_budget_s}")
        tuning = self.tune_trials is not None
        if tuning and self.target not in ("host", "cortex-a76"):
            raise EdgedetError(f"--tune-trials applies to --target host or cortex-a76, not {self.target}")
        if self.rpc:
            tvm_measure.parse_rpc(self.rpc, need_key=tuning)
        if tuning and self.target == "cortex-a76" and not self.rpc:
            raise EdgedetError("tuning --target cortex-a76 times candidates on the board: add --rpc HOST:PORT/KEY "
                               "(a TVM RPC tracker)")
        if self.input_size is not None and self.input_size < 32:
            raise EdgedetError(f"--input-size must be at least 32, got {self.input_size}")
        for name, v in (("--atol", self.atol), ("--rtol", self.rtol)):
            if v is not None and not v >= 0:
                raise EdgedetError(f"{name} must be a non-negative number, got {v}")

    def tolerance(self) -> parity.Tolerance:
        default = parity.DEFAULT_TOLERANCE[self.precision]
        return parity.Tolerance(
            default.atol if self.atol is None else self.atol, default.rtol if self.rtol is None else self.rtol
        )


@dataclass
class ExportResult:
    out: Path
    manifest: dict
    parity: parity.ParityResult
    seconds: float


Log = Callable[[str], None]


def build_model(req: ExportRequest) -> tuple[torch.nn.Module, dict]:
    """The model with its weights (checkpoint, or seeded init) and the manifest's weights entry."""

    torch.manual_seed(req.seed)
    overrides = dict(req.model_overrides)
    sd = None
    if req.checkpoint is not None:
        sd, recorded = load_model_weights(req.checkpoint)
        for k, v in recorded.items():  # what training built; explicit overrides win
            overrides.setdefault(k, v)
        n = weights.num_classes_of(sd)
        if n is not None and "num_classes" not in overrides:
            overrides["num_classes"] = n
    try:
        model = models.create(req.model, **overrides)
    except TypeError as e:
        raise EdgedetError(f"model '{req.model}' cannot be built with {overrides}: {e}") from None
    if sd is not None:
        weights.load_into(model, sd, req.checkpoint)
    return model.eval(), weights.weights_record(req.checkpoint, req.seed)


def default_input_size(model: torch.nn.Module) -> int:
    arch = getattr(model, "arch", None)
    size = getattr(arch, "input_size", None) or getattr(model, "export_input_size", None)
    return int(size) if size else 224


def export_artifact(req: ExportRequest, log: Log = lambda s: None) -> ExportResult:
    """Run one export end to end; raises EdgedetError (bad input) or ParityFailed."""
    req.validate()
    t0 = time.perf_counter()
    _require_runtime(req)
    model, weights_entry = build_model(req)
    size = req.input_size or default_input_size(model)
    form = prepare(model, size)
    batches = tuple(req.batches) if req.batches else ((1, 2, 3) if req.dynamic_batch else (1,))
    tolerance = req.tolerance()
    decompose = req.decompose  # TVM: edgedet.QuadraConv nodes become its fused kernel (tvm_import)
    ex = _to_onnx(req, form, decompose, log)
    inlined = [] if ex.custom_ops or not decompose else sorted(set(_custom_ops_of(form)))
    with artifact.staging_dir(req.out) as stage:
        files, model_file, runtime_info, res, trace = _write_and_check(req, ex, form, stage, batches, tolerance,
                                                                       log)
        manifest = {
            "schema_version": artifact.SCHEMA_VERSION,
            "edgedet_version": _edgedet_version(),
            "created_unix": int(time.time()),
            "source": {
                "model": req.model,
                "arch": _arch_json(model),
                "kind": form.kind,
                "input_size": size,
                "weights": weights_entry,
            },
            "format": req.format,
            "target": req.target if req.format == "tvm" else ("cuda" if req.format == "tensorrt" else "cpu"),
            "precision": req.precision,
            "model_file": model_file,
            "runtime": runtime_info,
            "onnx": {"opset": ex.opset, "ir_version": ex.ir_version, "decomposed": ex.decomposed},
            "custom_ops": ex.custom_ops if req.format in ("onnx", "tensorrt") else [],
            "custom_ops_converted": _converted(req, ex, inlined),
            "dynamic_batch": req.dynamic_batch,
            "inputs": _io_entries(ex.model.graph.input, ex.model.graph.initializer),
            "outputs": _io_entries(ex.model.graph.output, ()),
            "files": artifact.file_entries(stage, files),
            "parity": {**res.to_json(), **({"trace": _trace_json(trace)} if trace is not None else {})},
            "exported_on": {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
        artifact.remove_unlisted(stage, files)
        artifact.commit(stage, req.out, manifest)
    return ExportResult(Path(req.out), manifest, res, time.perf_counter() - t0)


def _to_onnx(req: ExportRequest, form, decompose: bool, log: Log):
    """The export-ready module as ONNX: edgedet's ops as local functions, or decomposed."""
    ops = "standard ops only" if decompose else "edgedet ops as local functions"
    log(f"exporting {req.model} to ONNX (opset {req.opset}, {ops})")
    return onnx_export.export_onnx(
        form.module,
        form.example(1, req.seed),
        form.input_names,
        form.output_names,
        opset=req.opset,
        dynamic_batch=req.dynamic_batch,
        decompose=decompose,
        onnx_nms=req.format != "tvm",  # TVM: static NMS as standard ops (see detection_ops_onnx)
    )


def _write_and_check(req: ExportRequest, ex, form, stage: Path, batches: tuple[int, ...], tolerance, log: Log):
    """Write the format's files into `stage`, then check parity against PyTorch on seeded
    inputs; a failure writes the report beside the output and raises ParityFailed."""

    def make_inputs(b: int) -> list[np.ndarray]:
        return [t.numpy() for t in form.example(b, req.seed + 1)]

    def reference(x: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = form.reference(*[torch.from_numpy(a) for a in x])
        out = out if isinstance(out, tuple | list) else (out,)
        return [o.numpy() for o in out]

    writer = {"onnx": _onnx_files, "openvino": _openvino_files, "tvm": _tvm_files,
              "tensorrt": _tensorrt_files}[req.format]
    try:
        files, model_file, runtime_info, run = writer(req, ex, form, stage, log)
        log(f"parity vs PyTorch on seeded inputs, batch {', '.join(map(str, batches))}")
        res = parity.check(
            form.output_names,
            make_inputs,
            reference,
            run,
            batches,
            runtime_name=runtime_info["name"],
            precision=req.precision,
            tolerance=tolerance,
            seed=req.seed + 1,
            note=runtime_info.get("parity_note", ""),
        )
    except EdgedetError:
        raise
    except Exception as e:  # the runtime could not convert/run this model: one clear line
        first = (str(e).strip().splitlines() or [""])[-1][:300]
        raise EdgedetError(
            f"{req.format} export of {req.model} failed in the runtime: {type(e).__name__}: {first}"
        ) from e
    trace = None
    if req.debug_parity or not res.passed:
        trace = _trace(req, ex, form, make_inputs(batches[0]), runtime_info["name"], tolerance, log)
    if not res.passed:
        report = report_path(req.out)
        write_json_atomic(report, _failure_report(req, res, trace))
        raise ParityFailed(res, trace, report)
    return files, model_file, runtime_info, res, trace


def _trace(req: ExportRequest, ex, form, inputs: list[np.ndarray], runtime: str, tol, log: Log):
    """The layer-by-layer trace within its time cap, or a string saying why there is none."""

    if runtime not in parity_trace.TRACE_RUNTIMES:
        return f"no layer-by-layer trace for {runtime} here (traces run on {', '.join(parity_trace.TRACE_RUNTIMES)})"
    if req.format == "tvm" and req.target != "host":
        runtime = "tvm"  # the trace runs a host build of the same graph
    log(f"layer-by-layer parity trace on {runtime} (at most {req.debug_parity_s:g} s)")
    feeds = dict(zip(form.input_names, inputs, strict=True))
    res = parity_trace.trace_within(
        ex.source, ex.model, feeds, runtime, req.precision, tol, req.debug_parity_s, req.threads
    )
    for line in res.lines() if not isinstance(res, str) else [res]:
        log(line)
    return res


def _trace_json(trace) -> dict:
    return {"error": trace} if isinstance(trace, str) else trace.to_json()


def _failure_report(req: ExportRequest, res: parity.ParityResult, trace) -> dict:
    return {
        "schema_version": 1,
        "kind": "parity-report",
        "model": req.model,
        "format": req.format,
        "target": req.target,
        "precision": req.precision,
        "artifact": str(req.out),
        "written": False,
        "parity": res.to_json(),
        "failing_outputs": [{"batch": b, **o.to_json()} for b, o in res.failing()],
        "trace": _trace_json(trace) if trace is not None else None,
    }


def _custom_ops_of(form) -> list[str]:
    return custom_ops_in(form.module)


def _converted(req: ExportRequest, ex, inlined: list[str]) -> dict:
    """How each edgedet op reached the runtime (kept as a node, extension, or inlined)."""
    ops = ex.custom_ops or inlined
    if req.format == "onnx" or req.format == "tensorrt":
        how = "inlined to standard ONNX ops (--decompose)" if ex.decomposed else "ONNX local function"
        if req.format == "tensorrt" and not ex.decomposed:
            how = "TensorRT plugin (Triton kernel)"
    elif req.format == "openvino":
        how = "inlined to standard ONNX ops (--decompose)" if ex.decomposed else None
    elif ex.decomposed:
        how = "inlined to standard ONNX ops before Relax import (--decompose)"
    else:  # TVM: QuadraConv as edgedet's fused kernel, the other ops inlined before Relax import
        return {op: TVM_FUSED.get(op, "inlined to standard ONNX ops before Relax import") for op in ops}
    out = {}
    for op in ops:
        if how is None:
            kind = op.rsplit(".", 1)[-1]
            out[op] = (
                f"OpenVINO CPU extension (fused edgedet.{kind} op, libedgedet_ov_ext.so)"
                if kind == "QuadraConv" or (kind == "BoxRPBAttention" and req.fused_boxrpb)
                else "inlined to standard ONNX ops"
            )
        else:
            out[op] = how
    return out


def _io_entries(values, initializers) -> list[dict]:
    from onnx import helper

    init = {i.name for i in initializers}
    out = []
    for v in values:
        if v.name in init:
            continue
        t = v.type.tensor_type
        shape = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in t.shape.dim]
        out.append(
            {"name": v.name, "shape": shape, "dtype": str(helper.tensor_dtype_to_np_dtype(t.elem_type))}
        )
    return out


def _arch_json(model) -> dict | None:
    arch = getattr(model, "arch", None)
    if arch is None:
        backbone = getattr(model, "backbone", None)
        arch = getattr(backbone, "arch", None)
    if arch is None or not hasattr(arch, "to_json"):
        return None
    import json

    doc = arch.to_json()
    return json.loads(doc) if isinstance(doc, str) else doc


def _edgedet_version() -> str:
    try:
        from importlib.metadata import version

        return version("edgedet")
    except Exception:
        return "unknown"


def _require_runtime(req: ExportRequest) -> None:
    if req.format == "tvm":
        require_tvm()
    elif req.format == "tensorrt":
        require_tensorrt()


# ---- per-format writers: (files, model_file, runtime info, run(inputs) -> outputs) ----


def _onnx_files(req, ex, form, stage: Path, log: Log):
    import onnxruntime as ort

    (stage / "model.onnx").write_bytes(ex.serialize())
    data = (stage / "model.onnx").read_bytes()
    names = form.input_names

    def run(x):
        return run_onnxruntime(data, dict(zip(names, x, strict=True)), req.threads)

    info = {"name": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider"}
    return ["model.onnx"], "model.onnx", info, run


def _openvino_files(req, ex, form, stage: Path, log: Log):
    import shutil

    import openvino as ov

    log(f"converting to OpenVINO IR (precision {req.precision}, explicit INFERENCE_PRECISION_HINT)")
    ov_model = ovx.convert(ex.serialize(), use_extensions=True, fused=not ex.decomposed,
                           fused_boxrpb=req.fused_boxrpb)
    ovx.save_ir(ov_model, stage / "model.xml", req.precision)
    files = ["model.xml", "model.bin"]
    extensions = []
    if openvino_extension.ir_needs_extension(stage / "model.xml"):
        built = openvino_extension.build()
        shutil.copy2(built.library, stage / built.library.name)  # the artifact carries its extension
        files.append(built.library.name)
        extensions.append(built.to_json())
    compiled = ovx.compile_ir(stage / "model.xml", req.precision, req.threads)
    names = form.input_names

    def run(x):
        return ovx.run_compiled(compiled, dict(zip(names, x, strict=True)))

    info = {
        "name": "openvino",
        "version": ov.__version__,
        "device": "CPU",
        "config": {"INFERENCE_PRECISION_HINT": ovx.PRECISION_HINTS[req.precision]},
        "extensions": extensions,  # libraries core.add_extension must load before read_model
    }
    return files, "model.xml", info, run


def _tvm_files(req, ex, form, stage: Path, log: Log):
    return tvm_artifact.build_artifact(req, ex, form, stage, log)


def _tensorrt_files(req, ex, form, stage: Path, log: Log):
    return trtx.build_artifact(req, ex, form, stage, log)
