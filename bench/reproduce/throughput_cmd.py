"""`edgedet reproduce throughput`: the command; the experiment is `edgedet.bench.reproduce.throughput`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

import typer

from edgedet.errors import EdgedetError


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("throughput")
    def throughput(
        json_path: str = typer.Option(None, "--json", help="Write the table JSON here."),
        threads: int = typer.Option(None, "--threads", min=1, help="Default: every usable CPU."),
        input_size: int = typer.Option(224, "--input-size", min=32),
        batch: int = typer.Option(32, "--batch", min=1, help="Batch for the throughput column."),
        duration_s: float = typer.Option(10.0, "--duration-s", min=0.1),
        quick: bool = typer.Option(False, "--quick", help="Batch 8, 2 s per measurement, 2 rounds."),
        rounds: int = typer.Option(None, "--rounds", min=1, help="Interleaved rounds (default 3; 2 with --quick)."),
        png: str = typer.Option(None, "--png", help="Draw the throughput bars here (PNG)."),
        runtime: str = typer.Option("both", "--runtime", help="onnxruntime | openvino | both."),
    ) -> None:
        """QuadraNet25/36-t (and 25-t with the fused OpenVINO op) vs FLOPs-matched ConvNet / SwinNet /
        HorNet on ONNX Runtime and OpenVINO, interleaved rounds."""
        from rich.console import Console

        from edgedet.bench.hostinfo import usable_cpus
        from edgedet.bench.reproduce.throughput import plot_throughput, run  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic

        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        if runtime not in ("onnxruntime", "openvino", "both"):
            raise EdgedetError(f"--runtime must be onnxruntime, openvino or both, got {runtime!r}")
        n = threads or usable_cpus()
        cfg = {
            "threads": n,
            "input_size": input_size,
            "batches": [1, 8 if quick else batch],
            "duration_s": 2.0 if quick else duration_s,
            "warmup_s": 0.5 if quick else 2.0,
            "min_iters": 3 if quick else 10,
            "quick": quick,
            "rounds": rounds or (2 if quick else 3),
            "runtimes": ["onnxruntime", "openvino"] if runtime == "both" else [runtime],
        }
        res = run(cfg, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        _print(console, res)
        console.print(f"[dim]{res['paper']}[/dim]")
        if json_path:
            write_json_atomic(json_path, res)
            console.print(f"wrote {json_path}")
        if png:
            plot_throughput(res, png)
            console.print(f"wrote {png}")


def _print(console, res: dict) -> None:
    """The table of every cell (medians) and the throughput ratios per runtime."""
    from rich.table import Table

    size, threads = res["settings"]["input_size"], res["settings"]["threads"]
    bn = res["settings"]["batches"][-1]
    t = Table(
        title=f"measured on {res['device']['cpu_model']}, {threads} threads, 1 stream, f32, {res['method']}, "
        f"{size}×{size} (peak {res['peak']['gemm_gflops']:.0f} GFLOP/s, "
        f"{res['peak']['copy_gbps']:.1f} GB/s)"
    )
    for col in (
        "model",
        "runtime",
        "params M",
        "GFLOPs",
        "b1 median ms",
        f"b{bn} items/s",
        f"b{bn} peak MiB",
        "roofline b1",
        f"roofline b{bn}",
    ):
        t.add_column(col, justify="right")
    for r in res["rows"]:
        frac = [
            f"{v:.1%}" if v is not None else "—"
            for v in (r["roofline_fraction_b1"], r["roofline_fraction_bn"])
        ]
        t.add_row(
            r["name"],
            r["runtime"],
            f"{r['params_m']:.2f}",
            f"{r['gflops']:.3f}",
            f"{r['latency_b1_ms']:.2f}",
            f"{r['throughput_items_per_s']:.1f}",
            f"{r['peak_memory_mib']:.0f}",
            *frac,
        )
    console.print(t)
    for runtime, rs in res["throughput_ratios"].items():
        console.print(
            f"{runtime} throughput ratios at batch {bn}: "
            + ", ".join(f"{k} = {v:.2f}×" for k, v in rs.items())
        )
    _print_ceiling(console, res.get("ceiling"))


def _print_ceiling(console, ceil: dict | None) -> None:
    """The largest ratios the fused QuadraNet25-t could reach (Amdahl over its profile; roofline)."""
    if not ceil:
        return
    console.print(f"{ceil['model']} (OpenVINO): dense GEMM-like nodes ({', '.join(ceil['dense_node_types'])}) "
                  f"take {ceil['dense_share']:.0%} of its per-node time")
    pn = ceil.get("per_node")
    if pn:
        console.print(f"  per node: GEMM-like nodes as measured, every other node at its roofline floor "
                      f"→ {pn['measured_ms']:.1f} ms → {pn['bound_ms']:.1f} ms per inference "
                      f"({pn['nodes_faster_than_floor']} nodes already beat their floor)")
    for name in ceil["measured_ratio"]:
        amdahl, roof = ceil["amdahl_max_ratio"][name], ceil["roofline_max_ratio"][name]
        per_node = (ceil.get("per_node_max_ratio") or {}).get(name)
        console.print(f"  vs {name}: measured {ceil['measured_ratio'][name]:.2f}×; ceiling with every "
                      f"non-GEMM node free {amdahl:.2f}×" + (f"; at the roofline {roof:.2f}×" if roof else "")
                      + (f"; per-node floors {per_node:.2f}×" if per_node else ""))
