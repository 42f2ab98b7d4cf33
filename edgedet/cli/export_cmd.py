"""`edgedet export`: a model (or arch.json) to ONNX / OpenVINO / TVM / TensorRT with a parity gate.

Each option is declared once as an `Annotated` alias below, so the command itself is its
signature plus the request it builds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from edgedet.errors import EdgedetError

Model = Annotated[str, typer.Argument(help="Registered model name or quadranet-arch:PATH (see `edgedet models`).")]
Format = Annotated[str, typer.Option("--format", "-f", help="onnx | openvino | tvm | tensorrt")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Artifact folder (default exports/<model>-<format>).")]
Checkpoint = Annotated[Path, typer.Option(
    "--checkpoint", "-c", help="Training checkpoint or state_dict (torch.save); default: seeded init.")]
Target = Annotated[str, typer.Option(
    "--target",
    help="TVM target: host (this CPU's features) | host-generic (no features, no schedules) | cortex-a76.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="fp32|f32, fp16|f16 or bf16 (the last two: openvino, tensorrt).")]
Decompose = Annotated[bool, typer.Option(
    "--decompose",
    help="Standard ONNX ops only (inline edgedet ops); for OpenVINO: three GroupConvolutions "
    "instead of edgedet's fused QuadraConv extension op.")]
FusedBoxRPB = Annotated[bool, typer.Option(
    "--fused-boxrpb",
    help="OpenVINO: BoxRPB attention as edgedet's fused extension op (opt-in: measured 0.27x the speed "
    "of the default lowering on an AVX2 CPU).")]
DynamicBatch = Annotated[bool, typer.Option("--dynamic-batch", help="Batch dimension left dynamic.")]
InputSize = Annotated[int, typer.Option("--input-size", help="Square input size (default: the model's, or 224).")]
Opset = Annotated[int, typer.Option("--opset", help="ONNX opset (>= 17).")]
Atol = Annotated[float, typer.Option(
    "--atol", "--tolerance",
    help="Parity: |got − ref| ≤ atol + rtol·|ref| per element (atol default 1e-4 fp32, 1e-2 fp16, "
    "5e-2 bf16; --tolerance is the old name).")]
Rtol = Annotated[float, typer.Option("--rtol", help="Parity rtol (default 1e-3 fp32, 1e-2 fp16, 5e-2 bf16).")]
DebugParity = Annotated[bool, typer.Option(
    "--debug-parity",
    help="Compare every intermediate tensor with the exporter's graph in float64 and print the first "
    "diverging node (runs by itself when parity fails).")]
DebugParityS = Annotated[float, typer.Option(
    "--debug-parity-s", min=1.0, help="Time cap of the layer-by-layer trace (s).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the initialisation (no checkpoint) and parity inputs.")]
Rpc = Annotated[str, typer.Option(
    "--rpc", help="TVM: HOST:PORT of an RPC server on the board (parity runs there), or HOST:PORT/KEY of an RPC "
    "tracker (also where --tune-trials times its candidates; needed to tune --target cortex-a76).")]
Threads = Annotated[int, typer.Option("--threads", help="Threads for export-time runs.")]
TuneTrials = Annotated[int, typer.Option(
    "--tune-trials",
    help="TVM: tune each task with up to N MetaSchedule trials on this CPU, or on the boards of the --rpc tracker "
    "(records cached in ~/.cache/edgedet/tvm; a record ships only where it beats the rule-based default schedule, "
    "timed side by side; the database ships in the artifact). Default: untuned, rule-based schedules.")]
TuneBudgetS = Annotated[float, typer.Option(
    "--tune-budget-s", help="TVM: stop tuning new tasks after S seconds (heaviest tasks go first).")]


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    model: Model,
    fmt: Format,
    out: Out = None,
    checkpoint: Checkpoint = None,
    target: Target = "host",
    precision: Precision = "fp32",
    decompose: Decompose = False,
    fused_boxrpb: FusedBoxRPB = False,
    dynamic_batch: DynamicBatch = False,
    input_size: InputSize = None,
    opset: Opset = 17,
    atol: Atol = None,
    rtol: Rtol = None,
    debug_parity: DebugParity = False,
    debug_parity_s: DebugParityS = 120.0,
    seed: Seed = 0,
    rpc: Rpc = None,
    threads: Threads = 1,
    tune_trials: TuneTrials = None,
    tune_budget_s: TuneBudgetS = None,
) -> None:
    """Export MODEL and check it against PyTorch; the artifact is written only if parity passes."""
    import torch

    from edgedet.exporters.pipeline import ExportRequest

    torch.set_num_threads(max(1, threads))
    safe = model.replace(":", "-").replace("/", "_")
    _run(ExportRequest(
        model=model, format=fmt, out=out or Path("exports") / f"{safe}-{fmt}", checkpoint=checkpoint,
        target=target, precision=precision, decompose=decompose, fused_boxrpb=fused_boxrpb,
        dynamic_batch=dynamic_batch,
        input_size=input_size, opset=opset, atol=atol, rtol=rtol, debug_parity=debug_parity,
        debug_parity_s=debug_parity_s, seed=seed, rpc=rpc, threads=threads, tune_trials=tune_trials,
        tune_budget_s=tune_budget_s,
    ))


def _run(req) -> None:
    """Export, print the parity failures as lines (and raise) or the artifact's summary."""
    from edgedet.exporters.pipeline import ParityFailed, export_artifact  # at run time: CLI start-up

    try:
        res = export_artifact(req, log=lambda s: print(f"· {s}", file=sys.stderr))
    except ParityFailed as e:
        for batch, o in e.result.failing():
            print(f"  batch {batch} {o.line()}", file=sys.stderr)
        raise EdgedetError(
            f"{e}; no artifact was written, only {e.report} (--atol / --rtol accept a larger error)"
        ) from None
    m = res.manifest
    ops = "; ".join(f"{op}: {how}" for op, how in m["custom_ops_converted"].items()) or "none"
    print(f"wrote {res.out} ({m['format']}, {m['precision']}) in {res.seconds:.1f} s; edgedet ops: {ops}")
    print(res.parity.summary())
