"""Human output of a bench result: a table whose title says what was measured where, the
warnings, and plots (latency distribution per batch, throughput vs batch)."""

from __future__ import annotations

from edgedet.io.atomic import atomic_output


def headline(result: dict) -> str:
    """'measured: <runtime> <version> on <device> (<cpu>), N threads, S stream(s), <precision>'."""
    rt, st, dev = result["runtime"], result["settings"], result["device"]
    build = f" ({rt['build']})" if rt.get("build") else ""  # TVM: tuned / untuned, target
    where = dev["name"] if dev.get("remote") else f"{dev['name']} ({dev['cpu_model']})"
    gpus = dev.get("gpus") or []
    if dev["name"] in ("cuda", "GPU") and gpus:
        where = f"{dev['name']} ({gpus[0]['name']})"
    return (
        f"measured: {rt['name']} {rt['version']}{build} on {where}, {st['threads'] or 'board-default'} threads, "
        f"{st['streams']} stream(s), {st['precision']}"
    )


def table(result: dict):
    from rich.table import Table

    t = Table(
        title=headline(result),
        caption=f"{result['settings']['target']} · timing: {result['settings']['timing']}",
    )
    for col in (
        "batch",
        "median ms",
        "mean",
        "p90",
        "p99",
        "min",
        "max",
        "CoV",
        "items/s",
        "peak MiB",
        "first ms",
        "load ms",
        "iters",
        "roofline ms",
        "of roofline",
    ):
        t.add_column(col, justify="right")
    for r in result["results"]:
        lat = r["latency_ms"]
        rl = r.get("roofline")
        mem = "—" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.1f}"
        t.add_row(
            str(r["batch"]),
            f"{lat['median']:.3f}",
            f"{lat['mean']:.3f}",
            f"{lat['p90']:.3f}",
            f"{lat['p99']:.3f}",
            f"{lat['min']:.3f}",
            f"{lat['max']:.3f}",
            f"{r['cov']:.1%}",
            f"{r['throughput_items_per_s']:.1f}",
            mem,
            f"{r['first_inference_ms']:.1f}",
            f"{r['load_ms']:.0f}",
            str(r["iterations"]),
            f"{rl['bound_ms']:.3f}" if rl else "—",
            f"{rl['achieved_fraction']:.1%}" if rl else "—",
        )
    return t


def print_report(result: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    console.print(table(result))
    mem = result["settings"]["memory_method"]
    console.print(f"[dim]peak memory: {mem}[/dim]")
    if result.get("roofline"):
        p = result["roofline"]["peak"]
        console.print(
            f"[dim]roofline: max(FLOPs / {p['gemm_gflops']:.1f} GFLOP/s, (weights + I/O bytes) / "
            f"{p['copy_gbps']:.1f} GB/s) at {p['threads']} threads ({p['source']})[/dim]"
        )
    for w in result.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


def plot(result: dict, path: str) -> None:
    """PNG with the latency distribution per batch (left) and throughput vs batch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = result["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.boxplot([r["samples_ms"] for r in rs], showfliers=True, whis=(1, 99))
    ax1.set_xticks(range(1, len(rs) + 1), [str(r["batch"]) for r in rs])
    ax1.set_xlabel("batch")
    ax1.set_ylabel("latency per inference (ms)")
    ax1.set_yscale("log")  # long tails (scheduler hiccups) would flatten a linear axis
    ax1.set_title("latency (box: quartiles, whiskers: p1–p99)")
    ax2.plot([r["batch"] for r in rs], [r["throughput_items_per_s"] for r in rs], "o-")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks([r["batch"] for r in rs], [str(r["batch"]) for r in rs])
    ax2.set_xlabel("batch")
    ax2.set_ylabel("throughput (items/s)")
    ax2.set_title("throughput vs batch")
    fig.suptitle(headline(result), fontsize=9)
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
