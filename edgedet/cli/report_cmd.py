"""`edgedet report RUN_DIR`: a self-contained report.html (tables, embedded PNGs) from the
search / export / bench / predict outputs in a run directory, each section's JSON beside it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="Folder holding search.json / arch.json, export manifests, "
                                       "bench --json and predict --json outputs (searched recursively)."),
        out: Path = typer.Option(None, "--out", help="HTML file to write (default RUN_DIR/report.html)."),
    ) -> None:
        """Build report.html (no network: inline CSS, base64 PNGs) and RUN_DIR/report/<section>.json."""
        from edgedet.report.build import build_report

        res = build_report(run_dir, out)
        missing = f"; sections without data: {', '.join(res.missing)}" if res.missing else ""
        print(f"wrote {res.html_path} ({res.images} plots) and {len(res.json_paths)} section JSON files in "
              f"{res.json_paths[0].parent}{missing}")
