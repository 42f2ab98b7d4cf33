"""`edgedet reproduce export-matrix`: the command; the experiment is `edgedet.bench.reproduce.export_matrix`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.bench.reproduce.export_matrix import COLUMNS, MODELS


def register(app: typer.Typer) -> None:
    @app.command("export-matrix")
    def export_matrix(
        json_path: Path = typer.Option(None, "--json", help="Write the matrix as JSON here."),
        input_size: int = typer.Option(128, "--input-size", help="Square input size of every export."),
        models: str = typer.Option(",".join(MODELS), "--models", help="Comma-separated rows."),
        columns: str = typer.Option(",".join(COLUMNS), "--columns", help="Comma-separated columns."),
        arch: Path = typer.Option(None, "--arch", help="arch.json from a search (default: a sampled one)."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Export every model to every runtime with parity against PyTorch (exit 1 if any fails)."""
        from rich.console import Console

        from edgedet.bench.reproduce.export_matrix import _table, run_matrix  # the experiment, when run
        from edgedet.errors import EdgedetError
        from edgedet.io.atomic import write_json_atomic

        rows = [m.strip() for m in models.split(",") if m.strip()]
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        bad = [c for c in cols if c not in COLUMNS]
        if bad:
            raise EdgedetError(f"unknown column(s) {', '.join(bad)} (choose {', '.join(COLUMNS)})")
        if arch is not None:
            rows = [f"quadranet-arch:{arch}" if r == "arch-json" else r for r in rows]
        console = Console(stderr=True)
        doc = run_matrix(rows, cols, input_size, seed, log=lambda s: console.print(s, markup=False))
        out_console = Console()
        if not out_console.is_terminal:
            out_console = Console(width=150)
        out_console.print(_table(doc))
        if json_path:
            write_json_atomic(json_path, doc)
            print(f"wrote {json_path}")
        if not doc["all_passed"]:
            bad = [f"{c['model']}×{c['column']}" for c in doc["cells"] if not c["passed"]]
            raise EdgedetError(f"{len(bad)} export(s) failed parity or errored: {', '.join(bad)}")
