"""`edgedet reproduce memory`: the command; the experiment is `edgedet.bench.reproduce.memory`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("memory")
    def memory(
        json_path: Path = typer.Option(None, "--json", help="Write the rows to this JSON file."),
        resolution: int = typer.Option(32, "--resolution", help="Input size; blocks run at resolution/4."),
        batch: int = typer.Option(64, "--batch", help="Batch size."),
        blocks: int = typer.Option(24, "--blocks", help="Blocks in the stack."),
        widths: str = typer.Option("64,128", "--widths", help="Comma-separated block widths."),
        threads: int = typer.Option(1, "--threads", help="torch threads in each child process."),
    ) -> None:
        """Activation memory of QuadraBlock vs Skip/Conv/Swin/Hor blocks (the paper's memory table)."""
        from edgedet.bench.reproduce.memory import _parse_widths, print_table, run  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic

        for name, v in (("--resolution", resolution), ("--batch", batch), ("--blocks", blocks),
                        ("--threads", threads)):
            if v <= 0:
                raise EdgedetError(f"{name} must be a positive integer, got {v}")
        if resolution < 4:
            raise EdgedetError(f"--resolution must be ≥ 4 (the stem has stride 4), got {resolution}")
        rows = run(resolution, batch, blocks, _parse_widths(widths), threads)
        print_table(rows)
        if json_path is not None:
            write_json_atomic(json_path, rows)
            print(f"wrote {json_path}")
