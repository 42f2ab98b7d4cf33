"""`edgedet quickstart` (run by `make quickstart`): the main job in one command — profile this
machine, search for a budget here and on cortex-a76, train briefly, export behind the parity
gate, bench, predict, and write report.html. Resumable: finished steps are skipped."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def parse_budgets(text: str | None) -> dict[str, float | None]:
    """'' → auto for both; 'B' → host budget B; 'B1,B2' → host B1, cortex-a76 B2 (ms)."""
    if not text:
        return {"host": None, "cortex-a76": None}
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise EdgedetError(f"--budget-ms expects HOST_MS or HOST_MS,A76_MS, got '{text}'") from None
    if len(vals) > 2 or any(v <= 0 for v in vals):
        raise EdgedetError(f"--budget-ms expects one or two positive numbers, got '{text}'")
    return {"host": vals[0], "cortex-a76": vals[1] if len(vals) == 2 else None}


def register(app: typer.Typer) -> None:
    @app.command("quickstart")
    def quickstart(
        out: Path = typer.Option(Path("runs/quickstart"), "--out", help="Run folder (rerun: finished steps skipped)."),
        budget_ms: str = typer.Option(None, "--budget-ms", help="HOST_MS[,A76_MS] (default: chosen so each binds: "
                                      "70% of the skeleton's predicted latency range, log scale)."),
        minutes: float = typer.Option(10.0, "--minutes", help="Time box the steps are sized to (minutes)."),
        threads: int = typer.Option(2, "--threads", help="CPU threads for training, search, bench and profile."),
    ) -> None:
        """Search, train, export, bench and predict a QuadraNet for two devices; write report.html."""
        from edgedet.cli.quickstart.run import run_quickstart
        from edgedet.cli.quickstart.steps import Plan

        if not minutes > 0:
            raise EdgedetError(f"--minutes must be positive, got {minutes}")
        if threads <= 0:
            raise EdgedetError(f"--threads must be a positive integer, got {threads}")
        if out.exists() and not out.is_dir():
            raise EdgedetError(f"--out {out} exists and is not a folder")
        run_quickstart(Plan(out=out, threads=threads, minutes=minutes, budgets_ms=parse_budgets(budget_ms)))
