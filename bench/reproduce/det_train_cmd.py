"""`edgedet reproduce det-train`: the command; the experiment is `edgedet.bench.reproduce.det_train`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("det-train")
    def det_train(
        detector: str = typer.Option("both", "--detector", help="plain-detr, asag or both (one after the other)."),
        minutes: float = typer.Option(None, "--minutes", help="Budget per detector (default: the recipe's, 28)."),
        processes: int = typer.Option(None, "--procs", help="Data-parallel processes (default: the recipe's, 2)."),
        threads: int = typer.Option(None, "--threads", help="torch threads per process (default: the recipe's, 1)."),
        out: Path = typer.Option(Path("runs/det-train"), "--out", help="Checkpoints and metrics.json go here."),
        json_path: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
    ) -> None:
        """Train Plain-DETR / ASAG (QuadraNet25-xxs) on the synthetic set within a time budget;
        report AP, AP50, AP_small against the AP50 ≥ 0.5 target."""
        from edgedet.bench.reproduce.det_train import DetTrainResult, print_table, run_one  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic
        from edgedet.training.det_recipe import RECIPES

        names = list(RECIPES) if detector == "both" else [detector]
        for n in names:
            if n not in RECIPES:
                raise EdgedetError(f"--detector must be one of {', '.join(RECIPES)} or both, got {detector!r}")
        for flag, v in (("--procs", processes), ("--threads", threads)):
            if v is not None and v <= 0:
                raise EdgedetError(f"{flag} must be a positive integer, got {v}")
        if minutes is not None and not minutes > 0:
            raise EdgedetError(f"--minutes must be positive, got {minutes}")
        rows = [run_one(n, minutes, out, processes, threads) for n in names]
        result = DetTrainResult(load_average_1m=os.getloadavg()[0], detectors=rows)
        print_table(result)
        if json_path is not None:
            write_json_atomic(json_path, result.to_json())
            print(f"wrote {json_path}")
        if not all(r.passed for r in rows):
            raise typer.Exit(1)
