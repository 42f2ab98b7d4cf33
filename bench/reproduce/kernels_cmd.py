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


LAYER_METHOD = {
    "openvino": "CPU plugin fp32 (as above)",
    "tvm": "Relax VM, llvm target of this CPU, edgedet default schedules, TVM_NUM_THREADS per child process",
    "torch": "eager CPU, torch.set_num_threads, inference_mode; fused = edgedet's C++ CPU op",
}


def _k7_summary(rows: list[dict], runtimes: list[str], head: int) -> dict:
    """The k=7 geomean speedups: OpenVINO's at `head` threads (the original key), each runtime's
    at `head`, and each runtime's per thread count; beside them the roofline ceiling of each
    (the geomean speedup a fused kernel running at the roofline bound would have)."""
    from edgedet.bench.reproduce.kernels_layers import k7_geomeans

    by_rt = k7_geomeans(rows)
    ceiling = k7_geomeans([r for r in rows if "roofline" in r], lambda r: r["roofline"]["fused_ceiling_speedup"])
    return {"quadconv_k7_geomean_speedup": by_rt.get("openvino", {}).get(str(head)),
            "quadconv_k7_geomean_speedup_by_runtime": {rt: by_rt.get(rt, {}).get(str(head)) for rt in runtimes},
            "quadconv_k7_geomean_threads": head,
            "quadconv_k7_geomean_speedup_by_runtime_threads": by_rt,
            "quadconv_k7_ceiling_by_runtime_threads": ceiling}


def _layer_rows(runtimes: list[str], counts: list[int], shapes: list, hostinfo: Path | None, rounds: int,
                inner: int) -> list[dict]:
    """The per-layer rows of every runtime at every thread count, each with its roofline."""
    from edgedet.bench.reproduce import kernels_layers as kl

    peak = kl.peaks(counts, hostinfo)
    rows = []
    for rt in runtimes:
        for t in counts:
            typer.echo(f"layers: {rt}, {t} thread(s), {len(shapes)} shapes", err=True)
            rows += kl.measure(rt, shapes, t, rounds, inner)
    for r in rows:
        kl.add_roofline(r, peak[r["threads"]])
    return rows


def _kernel_sizes(text: str) -> list[int]:
    try:
        ks = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise EdgedetError(f"--kernels must be comma-separated odd integers, got {text!r}") from None
    if any(k < 1 or k % 2 == 0 for k in ks):
        raise EdgedetError(f"--kernels must be odd and positive, got {text!r}")
    return ks


def _runtimes(text: str) -> list[str]:
    import importlib.util

    from edgedet.bench.reproduce.kernels_layers import RUNTIMES

    if not text.strip():
        if importlib.util.find_spec("tvm") is None:
            typer.echo("note: TVM is not installed (pip install 'edgedet[tvm]'): no tvm layer rows", err=True)
            return [r for r in RUNTIMES if r != "tvm"]
        return list(RUNTIMES)
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if not names or bad:
        raise EdgedetError(f"--runtimes must name some of {', '.join(RUNTIMES)}, got {text!r}")
    return list(dict.fromkeys(names))


def _thread_counts(text: str, threads: int) -> list[int]:
    """'1,all' → [1, usable CPUs]; empty → [threads, all] (duplicates dropped, order kept)."""
    from edgedet.bench.hostinfo import usable_cpus

    usable = usable_cpus()
    parts = [v.strip() for v in (text or f"{threads},all").split(",") if v.strip()]
    bad = f"--layer-threads must be comma-separated positive integers or 'all', got {text!r}"
    try:
        counts = [usable if v == "all" else int(v) for v in parts]
    except ValueError:
        raise EdgedetError(bad) from None
    if not counts or min(counts) <= 0:
        raise EdgedetError(bad)
    return list(dict.fromkeys(counts))


def register(app: typer.Typer) -> None:
    @app.command("kernels")
    def kernels(
        json_out: Path = typer.Option(None, "--json", help="Write the results here."),
        threads: int = typer.Option(1, "--threads", help="Threads of the headline figures: OpenVINO "
                                    "INFERENCE_NUM_THREADS of the layer geomean, whole model and BoxRPB rows, "
                                    "PyTorch threads of the training steps."),
        runtimes: str = typer.Option("", "--runtimes",
                                     help="Comma-separated runtimes of the per-layer rows: openvino, tvm, torch "
                                          "(default: all three; tvm skipped with a note when not installed)."),
        layer_threads: str = typer.Option("", "--layer-threads",
                                          help="Comma-separated thread counts of the per-layer rows, 'all' = "
                                               "every usable CPU (default: --threads and all)."),
        hostinfo: Path = typer.Option(None, "--hostinfo", help="`edgedet hostinfo --json` output: the peaks "
                                      "of the roofline fractions (default: measured here, 1 s per thread count)."),
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
        """Fused edgedet.QuadraConv vs decomposed forms per layer shape in OpenVINO, TVM host and
        PyTorch (1 thread and all, roofline fractions), and the whole model in OpenVINO; the fused
        BoxRPB attention's memory growth."""
        from rich.console import Console

        from edgedet.bench.reproduce.kernels import (  # the experiment, when run
            MODEL,
            SCHEMA_VERSION,
            _print,
            layer_shapes,
            measure_model,
            measure_torch_train,
        )
        from edgedet.cpu import cpu_model, vector_isa
        from edgedet.io.atomic import write_json_atomic

        if min(threads, rounds, inner, input_size) <= 0:
            raise EdgedetError("--threads, --rounds, --inner and --input-size must be positive")
        import os

        ks, rts, counts = _kernel_sizes(kernel_sizes), _runtimes(runtimes), _thread_counts(layer_threads, threads)
        load_before = os.getloadavg()
        shapes = [(c, h, k, s) for c, h, _, s in layer_shapes(MODEL, input_size) for k in ks]
        rows = _layer_rows(rts, counts, shapes, hostinfo, rounds, inner)
        whole = measure_model(MODEL, input_size, threads, rounds, max(2, inner // 4)) if model else None
        training = measure_torch_train("quadranet25-xxs", 128, 8, threads, rounds) if train else None
        memory = boxrpb_memory() if boxrpb else None
        ov_boxrpb = boxrpb_openvino(threads, rounds, max(2, inner // 4)) if boxrpb else None
        load_after = os.getloadavg()
        doc = {
            "schema_version": SCHEMA_VERSION,
            "device": {"cpu": cpu_model(), "isa": vector_isa().best, "cores": os.cpu_count()},
            "method": f"fp32, batch 1, median of {rounds} interleaved rounds of {inner} inferences (per layer: "
                      f"every runtime and thread count of layer_method; whole model: OpenVINO CPU, {threads} "
                      f"thread(s), {max(2, inner // 4)} inferences); ratio = best decomposed / fused",
            "load_average": {"before": list(load_before), "after": list(load_after)},
            "layer_method": {"runtimes": rts, "threads": counts, **LAYER_METHOD},
            "quadconv": rows,
            "boxrpb": ([{"runtime": "triton", **r} for r in memory["rows"]] + ov_boxrpb["rows"]) if memory else [],
            "summary": {
                **_k7_summary(rows, rts, threads if threads in counts else counts[0]),
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
