"""`edgedet reproduce predictor`: the command; the experiment is `edgedet.bench.reproduce.predictor`
(imported when the command runs, so `edgedet --help` does not load torch and the predictor)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("predictor")
    def predictor(
        json_out: Path = typer.Option(None, "--json", help="Write all results as JSON here."),
        profile: Path = typer.Option(
            None, "--profile", help="Measured profile of this machine (default: generate one in quick mode)."
        ),
        threads: int = typer.Option(1, "--threads", min=1),
        archs: int = typer.Option(10, "--archs", min=0, help="Random search-space architectures."),
        seed: int = typer.Option(0, "--seed"),
        png: Path = typer.Option(Path("predictor_scatter.png"), "--png", help="Scatter plot path."),
        skip_measured: bool = typer.Option(False, "--loo-only", help="Only part (a)."),
        include: str = typer.Option("all", "--include", help="all | cnn | quadranet | arch"),
        adapt_measure: str = typer.Option(
            "5,10,20", "--adapt-measure",
            help="(c) adaptation experiment: adapt cortex-a76 to this machine from these numbers of measured "
            "networks ('' skips it)."),
        in_process: bool = typer.Option(
            False, "--in-process",
            help="Time the evaluated models in this process (default: each in a fresh process, as bench does)."),
        profile_budget: float = typer.Option(
            480.0, "--profile-budget-s", min=60.0,
            help="Without --profile: seconds for the measured profile built first (≤ 300: quick mode)."),
        runtime: str = typer.Option(
            "onnxruntime", "--runtime",
            help="(b)'s runtime: onnxruntime, or tvm (this CPU; needs --profile of `edgedet profile --runtime "
                 "tvm`; every model compiled by the TVM exporter, so allow ~20 s each; no (c))."),
    ) -> None:
        """Leave-one-out error of predicted profiles; predicted vs measured on this machine."""
        from rich.console import Console

        from edgedet.bench.reproduce.predictor import PredictorConfig, run
        from edgedet.errors import EdgedetError
        from edgedet.io.atomic import write_json_atomic

        if runtime not in ("onnxruntime", "tvm"):
            raise EdgedetError(f"--runtime must be onnxruntime or tvm, got {runtime!r}")
        if runtime == "tvm" and profile is None and not skip_measured:
            raise EdgedetError("--runtime tvm needs --profile PATH "
                               "(build one: edgedet profile --runtime tvm --out PATH)")

        cfg = PredictorConfig(
            profile=profile, threads=threads, archs=archs, seed=seed, include=include,
            adapt_ns=tuple(sorted({int(x) for x in adapt_measure.split(",") if x.strip()})),
            in_process=in_process, profile_budget_s=profile_budget, runtime=runtime,
        )
        result = run(cfg, Console(), png, loo_only=skip_measured)
        if json_out is not None:
            write_json_atomic(json_out, result)
