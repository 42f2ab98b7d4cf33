"""`edgedet reproduce mabn`: the command; the experiment is `edgedet.bench.reproduce.mabn`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError

# The recipe chosen on source-range validation domains (docs/adapt.md, "Choices").
INNER_LR = 0.2
STATS = "support"


def register(reproduce: typer.Typer) -> None:
    @reproduce.command("mabn")
    def mabn(
        quick: bool = typer.Option(False, "--quick", help="2 seeds, shorter training, 300 test images per target "
                                                          "(the 10-minute variant)."),
        json_path: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
        out: Path = typer.Option(Path("runs/reproduce/mabn"), "--out",
                                 help="Folder for the plot, and the seed-0 MABN checkpoints (for `edgedet adapt`)."),
        seeds: int = typer.Option(None, "--seeds", help="Number of seeds [5; 2 with --quick]."),
        jobs: int = typer.Option(2, "--jobs", help="Worker processes, one (net, seed) each at a time."),
        threads: int = typer.Option(1, "--threads", help="torch intra-op threads per worker."),
        aux: str = typer.Option("rotation", "--aux", help="Auxiliary loss: rotation | byol."),
        inner_lr: float = typer.Option(INNER_LR, "--inner-lr", help="α of the inner (and test-time) step."),
        stats: str = typer.Option(STATS, "--stats",
                                  help="BatchNorm statistics of MABN's step and inference: source (frozen, "
                                       "the paper) | support (re-estimated on the adaptation images)."),
    ) -> None:
        """Target-domain accuracy of source-only, BN-stats, TENT and MABN (12 and 32 images)."""
        from edgedet.adapt.aux_heads import AUX_KINDS
        from edgedet.bench.reproduce.mabn import plot, print_table, run  # the experiment, when run
        from edgedet.io.atomic import write_json_atomic

        n = seeds if seeds is not None else (2 if quick else 5)
        if n <= 0 or threads <= 0 or jobs <= 0:
            raise EdgedetError("--seeds, --jobs and --threads must be positive integers")
        if out.exists() and not out.is_dir():
            raise EdgedetError(f"--out {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        if aux not in AUX_KINDS:
            raise EdgedetError(f"--aux must be one of {', '.join(AUX_KINDS)}, got {aux!r}")
        if stats not in ("source", "support"):
            raise EdgedetError(f"--stats must be source or support, got {stats!r}")
        if not inner_lr > 0:
            raise EdgedetError(f"--inner-lr must be positive, got {inner_lr}")
        result = run(list(range(n)), quick, out, threads, aux, inner_lr, stats, jobs)
        print_table(result["rows"])
        s = result["summary"]
        print("summary (BN net, 32 images): " + ", ".join(f"{k} {v:.1f}%" for k, v in s.items()))
        png = out / "mabn_accuracy.png"
        plot(result["rows"], png)
        print(f"wrote {png}, {out}/resnet-bn-mabn.pt, {out}/quadranet-mini-mabn.pt "
              f"in {result['wall_time_s']:.0f} s")
        if json_path is not None:
            write_json_atomic(json_path, result)
            print(f"wrote {json_path}")
