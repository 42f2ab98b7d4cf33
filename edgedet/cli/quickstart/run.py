"""The quickstart in order (a–g), with progress and a final summary table naming report.html."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edgedet.cli.quickstart.pareto import write_pareto
from edgedet.cli.quickstart.record import run_step
from edgedet.cli.quickstart.steps import (
    A76,
    HOST_FORMATS,
    PREDICT_ON,
    Plan,
    step_bench,
    step_budgets,
    step_export,
    step_predict,
    step_profile,
    step_search,
    step_train,
)
from edgedet.report.build import build_report


def run_quickstart(plan: Plan, console: Any = None) -> Path:
    """Run (or resume) every step; returns the path of report.html."""
    from rich.console import Console

    console = console or Console()
    t0 = time.perf_counter()
    plan.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:6.0f}s[/] {msg}", highlight=False)

    def stage(title: str) -> None:
        console.rule(f"quickstart: {title}")

    stage("a. profile this machine (ONNX Runtime, measured)")
    host = step_profile(plan, log)
    stage("b. search for a budget on this machine's profile and on cortex-a76")
    budgets = step_budgets(plan, host, log)
    archs = {key: step_search(plan, key, budgets[key], log) for key in ("host", A76)}
    stage("c. brief training of the found nets on synthetic data")
    ckpts = {key: step_train(plan, key, archs[key], log) for key in archs}
    stage("d. export behind the parity gate")
    host_arts = {fmt: step_export(plan, "host", archs["host"], ckpts["host"], fmt, "host", log)
                 for fmt in HOST_FORMATS}
    step_export(plan, A76, archs[A76], ckpts[A76], "tvm", A76, log)
    stage("e. bench every artifact this machine can run")
    for fmt, art in host_arts.items():
        step_bench(plan, art, fmt, log)
    log("the cortex-a76 TVM library needs the board: `edgedet bench ARTIFACT --runtime tvm --device "
        "rpc://HOST:PORT` (not measured here)")
    stage("f. predict")
    for dev in (*PREDICT_ON, str(host)):
        step_predict(plan, "host", archs["host"], dev, log)
    step_predict(plan, A76, archs[A76], A76, log)
    accs = {k: json.loads((plan.out / f"train-{k}" / "metrics.json").read_text())["final_val_acc"] for k in archs}
    pareto = plan.out / "pareto.json"
    run_step(plan.out, "pareto", {}, [archs["host"], archs[A76], host], [pareto],
             lambda: write_pareto(pareto, [(f"searched-{k}", archs[k], accs[k]) for k in archs], A76), log)
    stage("g. report")
    res = build_report(plan.out)
    summary(plan.out, res.html_path, time.perf_counter() - t0, console)
    return res.html_path


def summary(out: Path, html: Path, wall_s: float, console: Any) -> None:
    """One table: what was found, measured and predicted, read back from report/*.json."""
    from rich.table import Table

    sec = {p.stem: json.loads(p.read_text()) for p in (out / "report").glob("*.json")}
    t = Table(title=f"edgedet quickstart: {wall_s:.0f} s; report: {html}")
    for c in ("what", "value", "how it was obtained"):
        t.add_column(c)
    for r in sec["search"]["rows"]:
        t.add_row(f"{Path(r['search']).parent}", f"{r['predicted_latency_ms']:.3g} ms of {r['budget_ms']:g} ms budget",
                  r["latency_label"])
    for r in sec["training"]["rows"]:
        t.add_row(f"train {Path(r['metrics']).parent}", f"val acc {100 * r['final_val_acc']:.1f}% "
                  f"({r['times_chance']:.1f}× chance)", f"{r['epochs']} epochs, synthetic data")
    for r in sec["exports"]["rows"]:
        t.add_row(f"export {r['format']} {r['target']}", "parity " + ("passed" if r["parity_passed"] else "FAILED")
                  + f", max abs err {r['max_abs_err']:.1e}", f"vs PyTorch on {r['parity_runtime']}")
    for r in sec["latency"]["rows"]:
        t.add_row(f"bench {r['runtime']}", f"median {r['median_ms']:.3g} ms (p99 {r['p99_ms']:.3g})",
                  r["latency_label"])
    for r in sec["predictions"]["rows"]:
        net = Path(str(r["model"]).removeprefix("quadranet-arch:")).parent.name
        t.add_row(f"predict {net} on {r['profile']}", f"{r['latency_ms']:.3g} ms", r["latency_label"])
    for r in sec["predicted_vs_measured"]["rows"]:
        t.add_row(f"pred vs meas {r['runtime']}", f"{100 * r['error']:+.0f}%",
                  f"{r['predicted_ms']:.3g} predicted / {r['measured_median_ms']:.3g} ms measured")
    console.print(t)
    console.print(f"report: {html} (data beside it in {out / 'report'})", highlight=False)
