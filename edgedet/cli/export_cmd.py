"""`edgedet export`: a model (or arch.json) to ONNX / OpenVINO / TVM / TensorRT with a parity gate."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        model: str = typer.Argument(
            ..., help="Registered model name or quadranet-arch:PATH (see `edgedet models`)."
        ),
        fmt: str = typer.Option(..., "--format", "-f", help="onnx | openvino | tvm | tensorrt"),
        out: Path = typer.Option(
            None, "--out", "-o", help="Artifact folder (default exports/<model>-<format>)."
        ),
        checkpoint: Path = typer.Option(
            None,
            "--checkpoint",
            "-c",
            help="Training checkpoint or state_dict (torch.save); default: seeded init.",
        ),
        target: str = typer.Option(
            "host",
            "--target",
            help="TVM target: host (this CPU's features) | host-generic (no features, no schedules) | cortex-a76.",
        ),
        precision: str = typer.Option(
            "fp32", "--precision", help="fp32|f32, fp16|f16 or bf16 (the last two: openvino, tensorrt)."
        ),
        decompose: bool = typer.Option(
            False,
            "--decompose",
            help="Standard ONNX ops only (inline edgedet ops); for OpenVINO: three GroupConvolutions "
            "instead of edgedet's fused QuadraConv extension op.",
        ),
        dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Batch dimension left dynamic."),
        input_size: int = typer.Option(
            None, "--input-size", help="Square input size (default: the model's, or 224)."
        ),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 17)."),
        atol: float = typer.Option(
            None,
            "--atol",
            "--tolerance",
            help="Parity: |got − ref| ≤ atol + rtol·|ref| per element (atol default 1e-4 fp32, 1e-2 fp16, "
            "5e-2 bf16; --tolerance is the old name).",
        ),
        rtol: float = typer.Option(None, "--rtol", help="Parity rtol (default 1e-3 fp32, 1e-2 fp16, 5e-2 bf16)."),
        debug_parity: bool = typer.Option(
            False,
            "--debug-parity",
            help="Compare every intermediate tensor with the exporter's graph in float64 and print the first "
            "diverging node (runs by itself when parity fails).",
        ),
        debug_parity_s: float = typer.Option(
            120.0, "--debug-parity-s", min=1.0, help="Time cap of the layer-by-layer trace (s)."
        ),
        seed: int = typer.Option(
            0, "--seed", help="Seed of the initialisation (no checkpoint) and parity inputs."
        ),
        rpc: str = typer.Option(
            None, "--rpc", help="HOST:PORT of a TVM RPC server on the target board for parity."
        ),
        threads: int = typer.Option(1, "--threads", help="Threads for export-time runs."),
        tune_trials: int = typer.Option(
            None,
            "--tune-trials",
            help="TVM: tune each task with up to N MetaSchedule trials on this CPU (records cached in "
            "~/.cache/edgedet/tvm; the database ships in the artifact). Default: untuned, rule-based schedules.",
        ),
        tune_budget_s: float = typer.Option(
            None, "--tune-budget-s", help="TVM: stop tuning new tasks after S seconds (heaviest tasks go first)."
        ),
    ) -> None:
        """Export MODEL and check it against PyTorch; the artifact is written only if parity passes."""
        import torch

        from edgedet.exporters.pipeline import ExportRequest

        torch.set_num_threads(max(1, threads))
        safe = model.replace(":", "-").replace("/", "_")
        _run(ExportRequest(
            model=model,
            format=fmt,
            out=out or Path("exports") / f"{safe}-{fmt}",
            checkpoint=checkpoint,
            target=target,
            precision=precision,
            decompose=decompose,
            dynamic_batch=dynamic_batch,
            input_size=input_size,
            opset=opset,
            atol=atol,
            rtol=rtol,
            debug_parity=debug_parity,
            debug_parity_s=debug_parity_s,
            seed=seed,
            rpc=rpc,
            threads=threads,
            tune_trials=tune_trials,
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
