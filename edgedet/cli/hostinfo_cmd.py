"""`edgedet hostinfo`: this machine's fingerprint and measured physical limits (peak FP32
GEMM FLOP/s and copy bandwidth per thread count) that bench's roofline bounds use."""

from __future__ import annotations

import typer


def _isa_text(isa: dict) -> str:
    capped = f", capped by {isa['cap']}" if isa.get("cap") else ""
    return f"{isa['best']}{capped}"


def register(app: typer.Typer) -> None:
    @app.command("hostinfo")
    def hostinfo(
        json_path: str = typer.Option(
            None, "--json", help="Write the hostinfo JSON here (bench --hostinfo reads it)."
        ),
        threads: str = typer.Option(
            None, "--threads", help="Thread counts to measure, e.g. 1,2,4 (default: 1..usable CPUs)."
        ),
        seconds: float = typer.Option(1.0, "--seconds", min=0.05, help="Measuring time per thread count."),
    ) -> None:
        """Measure peak FP32 GEMM FLOP/s and memory bandwidth for each thread count."""
        from rich.console import Console
        from rich.table import Table

        from edgedet.bench import hostinfo as host
        from edgedet.cli.bench_cmd import parse_batches
        from edgedet.io.atomic import write_json_atomic

        counts = parse_batches(threads) if threads else None
        console = Console()
        with console.status("measuring GEMM and copy peaks…"):
            info = host.measure(counts, seconds)
        d = info["device"]
        t = Table(
            title=f"measured on {d['cpu_model']} ({d['usable_cpus']} usable CPUs, "
            f"{d['physical_cores']} cores, vector ISA {_isa_text(d['isa'])}), 1-min load {d['load_average_1m']}",
            caption=f"{info['method']['gemm']}; {info['method']['copy']}",
        )
        for col in ("threads", "GEMM GFLOP/s", "copy GB/s", "ridge FLOP/B"):
            t.add_column(col, justify="right")
        for p in info["peaks"]:
            t.add_row(
                str(p["threads"]),
                f"{p['gemm_gflops']:.1f}",
                f"{p['copy_gbps']:.1f}",
                f"{p['gemm_gflops'] / p['copy_gbps']:.1f}",
            )
        console.print(t)
        if d["gpus"]:
            console.print("GPUs: " + ", ".join(g["name"] for g in d["gpus"]))
        if json_path:
            write_json_atomic(json_path, info)
            console.print(f"wrote {json_path}")
