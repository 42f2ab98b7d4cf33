"""`edgedet bench ARTIFACT|MODEL`: measured latency, throughput and memory of one model on one
runtime and device, each batch in a fresh child process."""

from __future__ import annotations

import typer

from edgedet.errors import EdgedetError
from edgedet.precision import HELP as PRECISION_HELP


def parse_batches(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EdgedetError(f"--batch expects comma-separated integers like 1,8,32, got '{text}'") from None
    if not out or any(b < 1 for b in out):
        raise EdgedetError(f"--batch expects positive integers like 1,8,32, got '{text}'")
    return out


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        target: str = typer.Argument(
            ...,
            metavar="ARTIFACT|MODEL",
            help="Export folder (manifest.json), .onnx / .xml file, or a model name (with --runtime torch).",
        ),
        runtime: str = typer.Option(..., "--runtime", help="torch | onnxruntime | openvino | tvm | tensorrt"),
        device: str = typer.Option(
            "cpu",
            "--device",
            help="cpu | cuda | GPU | NPU | rpc://HOST:PORT or rpc://HOST:PORT/KEY "
            "(TVM RPC server, or tracker and key)",
        ),
        batch: str = typer.Option("1", "--batch", help="Comma-separated batch sizes, e.g. 1,8,32."),
        threads: int = typer.Option(None, "--threads", help="CPU threads (default: every usable CPU)."),
        streams: int = typer.Option(1, "--streams", help="Inference streams (OpenVINO NUM_STREAMS)."),
        precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
        warmup_s: float = typer.Option(2.0, "--warmup-s", min=0.0, help="Time-based warm-up (s)."),
        duration_s: float = typer.Option(10.0, "--duration-s", min=0.0, help="Minimum measured time (s)."),
        min_iters: int = typer.Option(50, "--min-iters", min=1, help="Minimum measured inferences."),
        input_size: int = typer.Option(
            None, "--input-size", min=1, help="Square input size for dynamic spatial dims (default 224)."
        ),
        hostinfo: str = typer.Option(
            None,
            "--hostinfo",
            help="Peaks from `edgedet hostinfo --json` for the roofline (default: measured briefly).",
        ),
        no_roofline: bool = typer.Option(False, "--no-roofline", help="Skip the roofline bound."),
        json_path: str = typer.Option(None, "--json", help="Write the result JSON here."),
        plot_path: str = typer.Option(None, "--plot", help="Write latency / throughput plots (PNG) here."),
    ) -> None:
        """Measure latency (min/mean/median/p90/p95/p99/max/std/CoV), throughput and peak memory."""
        from rich.console import Console

        from edgedet.bench.report import plot, print_report
        from edgedet.bench.runner import BenchConfig, run_bench
        from edgedet.io.atomic import write_json_atomic

        console = Console()
        if not console.is_terminal:  # logs and pipes: wide enough that the table is never truncated
            console = Console(width=160)
        cfg = BenchConfig(
            target=target,
            runtime=runtime,
            device=device,
            batches=parse_batches(batch),
            threads=threads,
            streams=streams,
            precision=precision,
            warmup_s=warmup_s,
            duration_s=duration_s,
            min_iters=min_iters,
            input_size=input_size,
            hostinfo_path=hostinfo,
            roofline=not no_roofline,
        )
        with console.status("benchmarking…") as status:
            result = run_bench(cfg, progress=lambda msg: status.update(msg))
        print_report(result, console)
        if json_path:
            write_json_atomic(json_path, result)
            console.print(f"wrote {json_path}")
        if plot_path:
            plot(result, plot_path)
            console.print(f"wrote {plot_path}")
