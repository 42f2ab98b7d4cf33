"""`edgedet reproduce asag-nms-tuning`: the command; the experiment is `edgedet.bench.reproduce.asag_nms_tuning`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("asag-nms-tuning")
    def asag_nms_tuning(
        checkpoints: list[Path] = typer.Option(..., "--checkpoint", "-c",
                                               help="ASAG detection checkpoint (repeat for several)."),
        images: int = typer.Option(400, "--images", help="Images in the tuning split."),
        seed: int = typer.Option(101, "--seed", help="Synthetic-set seed of the tuning split."),
        json_path: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
    ) -> None:
        """AP50 of trained ASAG checkpoints for each inference NMS setting, on a synthetic tuning
        split that is neither their training nor their validation data."""
        from edgedet.bench.reproduce.asag_nms_tuning import (  # the experiment, when run
            print_table,
            run,
        )
        from edgedet.io.atomic import write_json_atomic

        if images <= 0:
            raise EdgedetError(f"--images must be a positive integer, got {images}")
        for c in checkpoints:
            if not c.is_file():
                raise EdgedetError(f"checkpoint {c} does not exist")
        result = run(checkpoints, images, seed)
        print_table(result)
        if json_path is not None:
            write_json_atomic(json_path, result.to_json())
            print(f"wrote {json_path}")
