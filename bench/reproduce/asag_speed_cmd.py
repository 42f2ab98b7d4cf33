"""`edgedet reproduce asag-speed`: the command; the experiment is `edgedet.bench.reproduce.asag_speed`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("asag-speed")
    def asag_speed(
        json_path: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
        minutes: float = typer.Option(30.0, "--minutes", help="Training budget per variant (wall clock)."),
        threads: int = typer.Option(2, "--threads", help="torch threads."),
        img_size: int = typer.Option(192, "--img-size", help="Synthetic image size."),
        layers: str = typer.Option("1,6", "--layers", help="Comma-separated decoder depths to compare."),
        batch: int = typer.Option(8, "--batch", help="Training batch size."),
        train_size: int = typer.Option(2000, "--train-size", help="Synthetic training images."),
        val_size: int = typer.Option(200, "--val-size", help="Synthetic validation images."),
        latency_only: bool = typer.Option(
            False, "--latency-only", help="Skip training and AP; time untrained models."
        ),
    ) -> None:
        """ASAG one decoder layer vs six: AP on the synthetic set and latency on this CPU."""
        from edgedet.bench.reproduce.asag_speed import print_table, run  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic

        try:
            depths = [int(v) for v in layers.split(",") if v.strip()]
        except ValueError as e:
            raise EdgedetError(f"--layers must be comma-separated integers, got {layers!r}") from e
        if not depths or any(d < 1 for d in depths):
            raise EdgedetError(f"--layers must list depths ≥ 1, got {layers!r}")
        for name, v in (
            ("--threads", threads),
            ("--img-size", img_size),
            ("--batch", batch),
            ("--train-size", train_size),
            ("--val-size", val_size),
        ):
            if v <= 0:
                raise EdgedetError(f"{name} must be a positive integer, got {v}")
        if img_size % 32:
            raise EdgedetError(f"--img-size must be a multiple of 32, got {img_size}")
        if not minutes > 0:
            raise EdgedetError(f"--minutes must be positive, got {minutes}")
        result = run(minutes, threads, img_size, depths, batch, train_size, val_size, latency_only)
        print_table(result)
        if json_path is not None:
            write_json_atomic(json_path, result)
            print(f"wrote {json_path}")
