"""`edgedet reproduce kernels`: the command; the experiment is `edgedet.bench.reproduce.kernels`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def boxrpb_memory(quick: bool = False) -> dict:
    """`edgedet.bench.reproduce.boxrpb_memory` in a child process (it must set TRITON_INTERPRET
    before Triton is imported where there is no GPU)."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgedet.bench.reproduce.boxrpb_memory", *(["--quick"] if quick else [])]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgedetError(f"BoxRPB memory measurement failed: {tail}")
    return json.loads(res.stdout)


def boxrpb_openvino(threads: int, rounds: int, inner: int) -> dict:
    """edgedet's fused OpenVINO BoxRPB node vs the decomposed lowering (memory and time per size)."""
    from edgedet.bench.reproduce import boxrpb_openvino as bov

    return bov.measure(bov.GRID, threads, rounds, inner)


def register(app: typer.Typer) -> None:
    @app.command("kernels")
    def kernels(
        json_out: Path = typer.Option(None, "--json", help="Write the results here."),
        threads: int = typer.Option(1, "--threads", help="OpenVINO INFERENCE_NUM_THREADS."),
        rounds: int = typer.Option(9, "--rounds", help="Interleaved rounds (median reported)."),
        inner: int = typer.Option(20, "--inner", help="Inferences per variant per round."),
        kernel_sizes: str = typer.Option("7", "--kernels", help="Comma-separated k of the layers, e.g. 3,5,7."),
        model: bool = typer.Option(True, "--model/--no-model", help="Also time the whole QuadraNet25-t."),
        train: bool = typer.Option(True, "--train/--no-train",
                                   help="Also time PyTorch training steps of QuadraNet25-xxs with/without the CPU op."),
        input_size: int = typer.Option(224, "--input-size"),
        boxrpb: bool = typer.Option(True, "--boxrpb/--no-boxrpb",
                                    help="Also measure the fused BoxRPB attention vs K, H, W "
                                         "(Triton memory; OpenVINO memory and time)."),
    ) -> None:
        """Fused edgedet.QuadraConv vs decomposed forms in OpenVINO: per layer shape and whole model;
        the fused BoxRPB attention's memory growth."""
        from rich.console import Console

        from edgedet.bench.reproduce.kernels import (  # the experiment, when run
            MODEL,
            SCHEMA_VERSION,
            _print,
            geomean,
            layer_shapes,
            measure_layers,
            measure_model,
            measure_torch_train,
        )
        from edgedet.cpu import cpu_model, vector_isa
        from edgedet.io.atomic import write_json_atomic

        if min(threads, rounds, inner, input_size) <= 0:
            raise EdgedetError("--threads, --rounds, --inner and --input-size must be positive")
        try:
            ks = sorted({int(v) for v in kernel_sizes.split(",")})
        except ValueError:
            raise EdgedetError(f"--kernels must be comma-separated odd integers, got {kernel_sizes!r}") from None
        if any(k < 1 or k % 2 == 0 for k in ks):
            raise EdgedetError(f"--kernels must be odd and positive, got {kernel_sizes!r}")
        import os

        load_before = os.getloadavg()
        shapes = [(c, h, k, s) for c, h, _, s in layer_shapes(MODEL, input_size) for k in ks]
        rows = measure_layers(shapes, threads, rounds, inner)
        whole = measure_model(MODEL, input_size, threads, rounds, max(2, inner // 4)) if model else None
        training = measure_torch_train("quadranet25-xxs", 128, 8, threads, rounds) if train else None
        memory = boxrpb_memory() if boxrpb else None
        ov_boxrpb = boxrpb_openvino(threads, rounds, max(2, inner // 4)) if boxrpb else None
        load_after = os.getloadavg()
        k7 = [r["speedup"] for r in rows if r["kernel"] == 7]
        doc = {
            "schema_version": SCHEMA_VERSION,
            "device": {"cpu": cpu_model(), "isa": vector_isa().best, "cores": os.cpu_count()},
            "method": f"OpenVINO CPU fp32, {threads} thread(s), batch 1, median of {rounds} interleaved rounds of "
                      f"{inner} inferences (whole model {max(2, inner // 4)}); ratio = best decomposed / fused",
            "load_average": {"before": list(load_before), "after": list(load_after)},
            "quadconv": rows,
            "boxrpb": ([{"runtime": "triton", **r} for r in memory["rows"]] + ov_boxrpb["rows"]) if memory else [],
            "summary": {
                "quadconv_k7_geomean_speedup": geomean(k7),
                "model_speedup": {"runtime": "openvino", "ratio": whole["ratio"]} if whole else None,
                "boxrpb_memory_growth": memory["growth"]["fused"] if memory else None,
                "torch_train_speedup": training["ratio"] if training else None,
            },
            "model": whole,
            "torch_train": training,
            "boxrpb_memory": {k: v for k, v in memory.items() if k != "rows"} if memory else None,
            "boxrpb_openvino": {k: v for k, v in ov_boxrpb.items() if k != "rows"} if ov_boxrpb else None,
        }
        _print(Console(), doc)
        if json_out is not None:
            write_json_atomic(json_out, doc)
            typer.echo(f"wrote {json_out}")
