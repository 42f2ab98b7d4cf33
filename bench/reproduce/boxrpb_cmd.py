"""`edgedet reproduce boxrpb`: the command; the experiment is `edgedet.bench.reproduce.boxrpb`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(app: typer.Typer) -> None:
    @app.command("boxrpb")
    def boxrpb(
        json_out: Path = typer.Option(None, "--json", help="Write the results here."),
        queries: int = typer.Option(100, "--queries", help="Queries for the measured (reduced) setting."),
        image: str = typer.Option("400x667", "--image", help="Measured image HxW (stride 16)."),
        threads: int = typer.Option(1, "--threads", help="torch threads for the timings."),
        repeats: int = typer.Option(7, "--repeats", help="Timing repeats (median reported)."),
    ) -> None:
        """Decomposed vs naive BoxRPB: analytic cost at the paper's setting, measured memory and
        FLOPs at a reduced size, and runtime vs cross-attention without a bias."""
        from rich.console import Console

        from edgedet.bench.reproduce.boxrpb import PAPER, SCHEMA_VERSION, _print, measure  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic
        from edgedet.models.boxrpb import boxrpb_cost

        try:
            ih, iw = (int(v) for v in image.lower().split("x"))
        except ValueError:
            raise EdgedetError(f"--image must be HxW like 400x667, got {image!r}") from None
        if min(ih, iw, queries, threads, repeats) <= 0:
            raise EdgedetError("--image, --queries, --threads and --repeats must be positive")
        h, w = -(-ih // 16), -(-iw // 16)
        paper = boxrpb_cost(300, 8, 50, 84, hidden=512, dim=256)
        measured = measure(queries, h, w, 8, 512, 256, threads, repeats)
        _print(Console(), paper, measured, queries, (ih, iw), (h, w))
        if json_out is not None:
            write_json_atomic(json_out, {"schema_version": SCHEMA_VERSION, "paper_setting": paper,
                                         "paper_reported": PAPER,
                                         "measured_setting": {"queries": queries, "image": [ih, iw],
                                                              "map": [h, w], "heads": 8, "hidden": 512,
                                                              "dim": 256, "batch": 1, "threads": threads},
                                         "measured": measured})
            typer.echo(f"wrote {json_out}")
