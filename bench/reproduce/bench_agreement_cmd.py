"""`edgedet reproduce bench-agreement`: the command; the experiment is `edgedet.bench.reproduce.bench_agreement`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

import os

import typer


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("bench-agreement")
    def bench_agreement(
        json_path: str = typer.Option(None, "--json", help="Write the comparison JSON here."),
        model: str = typer.Option(
            "quadranet25-xxs", "--model", help="Registered model to export and measure."
        ),
        batch: int = typer.Option(1, "--batch", min=1),
        input_size: int = typer.Option(224, "--input-size", min=32),
        threads: int = typer.Option(None, "--threads", min=1, help="Default: every usable CPU."),
        seconds: float = typer.Option(6.0, "--seconds", min=1.0, help="Measured time per run, both tools."),
        rounds: int = typer.Option(5, "--rounds", min=1, help="Interleaved runs per tool."),
        quick: bool = typer.Option(False, "--quick", help="3 rounds of 3 s."),
    ) -> None:
        """OpenVINO's benchmark_app vs edgedet bench on the same IR: both medians and their ratio."""
        from rich.console import Console
        from rich.table import Table

        from edgedet.bench.hostinfo import usable_cpus
        from edgedet.bench.reproduce.bench_agreement import TOLERANCE, agreement  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic

        console = Console()
        if quick:
            seconds, rounds = 3.0, 3
        n = threads or usable_cpus()
        res = agreement(
            model,
            batch,
            input_size,
            n,
            seconds,
            rounds,
            warmup_s=1.0,
            log=lambda m: console.print(f"[dim]{m}[/dim]"),
        )
        d = res["device"]
        t = Table(
            title=f"measured: OpenVINO {res['openvino']} on {d['cpu_model']}, {n} threads, 1 stream, sync, "
            f"f32, batch {batch}, {model} {input_size}×{input_size}"
        )
        for col in ("round", "edgedet median ms", "benchmark_app median ms", "ratio"):
            t.add_column(col, justify="right")
        for i, r in enumerate(res["rounds"]):
            t.add_row(
                str(i + 1),
                f"{r['edgedet']['median']:.3f}",
                f"{r['benchmark_app']['median']:.3f}",
                f"{r['ratio']:.3f}",
            )
        t.add_row(
            "median",
            f"{res['edgedet_median_ms']:.3f}",
            f"{res['benchmark_app_median_ms']:.3f}",
            f"{res['ratio']:.3f} (paired)",
        )
        console.print(t)
        verdict = "within" if res["within_tolerance"] else "OUTSIDE"
        console.print(
            f"edgedet / benchmark_app median ratio = {res['ratio']:.3f} (median of per-round ratios; "
            f"ratio of the medians {res['ratio_of_medians']:.3f}): {verdict} ±{TOLERANCE:.0%} "
            f"(1-min load at the end: {os.getloadavg()[0]:.2f} on {d['usable_cpus']} CPUs)"
        )
        for p in res["edgedet_back_to_back"]:
            a, b = p["medians_ms"]
            console.print(
                f"edgedet bench twice in a row: medians {a:.3f} and {b:.3f} ms, {p['difference']:.1%} apart"
            )
        console.print(
            f"edgedet median spread over all rounds (max − min) / median = {res['edgedet_repeat_spread']:.1%}"
        )
        if json_path:
            write_json_atomic(json_path, res)
            console.print(f"wrote {json_path}")
