"""`edgedet reproduce tvm`: the command; the experiment is `edgedet.bench.reproduce.tvm`
(imported when the command runs: it needs TVM, ONNX Runtime and OpenVINO)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def _models(spec: str | None, quick: bool, size: int | None) -> dict[str, int]:
    from edgedet.bench.reproduce.tvm import MODELS, QUICK_MODELS
    from edgedet.models import names

    base = QUICK_MODELS if quick else MODELS
    chosen = list(base) if not spec else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in names()]
    if unknown or not chosen:
        raise EdgedetError(f"--models: unknown model(s) {', '.join(unknown) or spec!r}")
    return {m: size or base.get(m, MODELS.get(m, 224)) for m in chosen}


def _budgets(spec: str | None) -> tuple[float, ...]:
    if not spec:
        return ()
    try:
        out = tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise EdgedetError(f"--tune-budgets {spec}: expected seconds, comma-separated (e.g. 300,1200)") from None
    if any(not v > 0 for v in out) or len(set(out)) != len(out):
        raise EdgedetError(f"--tune-budgets {spec}: budgets must be positive and distinct")
    return out


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("tvm")
    def tvm(
        json_path: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
        quick: bool = typer.Option(False, "--quick", help="Small models and sizes, few rounds (a smoke run)."),
        models: str = typer.Option(None, "--models", help="Comma-separated models (default: the suite's)."),
        input_size: int = typer.Option(None, "--input-size", help="One input size for every model."),
        threads: int = typer.Option(1, "--threads", help="Threads in every runtime."),
        rounds: int = typer.Option(None, "--rounds", help="Interleaved rounds (default 9, --quick 3)."),
        inner: int = typer.Option(None, "--inner", help="Inferences per variant per round (default 3, quick 2)."),
        tune_budgets: str = typer.Option(
            None, "--tune-budgets",
            help="Comma-separated tuning budgets in seconds: one tvm-tuned-<S> row each (MetaSchedule from an "
            "empty cache, the tuning wall time recorded)."),
        tune_trials: int = typer.Option(32, "--tune-trials", help="MetaSchedule trials per task for the tuned rows."),
    ) -> None:
        """TVM artifacts (featureless, default schedules fused / decomposed, tuned) vs ONNX Runtime and OpenVINO."""
        rounds = rounds if rounds is not None else (3 if quick else 9)
        inner = inner if inner is not None else (2 if quick else 3)
        for name, v in (("--threads", threads), ("--rounds", rounds), ("--inner", inner),
                        ("--input-size", input_size if input_size is not None else 1)):
            if v <= 0:
                raise EdgedetError(f"{name} must be a positive integer, got {v}")
        budgets = _budgets(tune_budgets)
        if tune_trials < 1:
            raise EdgedetError(f"--tune-trials must be at least 1, got {tune_trials}")
        chosen = _models(models, quick, input_size)
        os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's thread pool starts
        from edgedet.bench.reproduce.tvm import print_table, run  # the experiment, when run
        from edgedet.exporters.tvm import require_tvm
        from edgedet.io.atomic import write_json_atomic

        require_tvm()
        doc = run(chosen, threads, rounds, inner, tune_budgets=budgets, tune_trials=tune_trials)
        print_table(doc)
        if json_path is not None:
            write_json_atomic(json_path, doc)
            print(f"wrote {json_path}")
