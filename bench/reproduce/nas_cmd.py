"""`edgedet reproduce nas`: the command; the experiment is `edgedet.bench.reproduce.nas`
(imported when the command runs, so `edgedet --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.bench.reproduce.nas import BUDGETS


def register(app: typer.Typer) -> None:
    @app.command("nas")
    def nas(
        json_path: str = typer.Option(None, "--json", help="Also write the results as JSON here."),
        quick: bool = typer.Option(False, "--quick", help="2-minute searches, 512 images, 2 training epochs, "
                                   "10 random nets, 30 archs in the proxy ranking study."),
        seeds: int = typer.Option(2, "--seeds", min=1, help="Training seeds per architecture."),
        n_random: int = typer.Option(10, "--random", min=1, help="Random in-band architectures per budget."),
        train_size: int = typer.Option(32, "--train-size", min=32, help="Proxy image size."),
        out: str = typer.Option("nas-reproduce", "--out", help="Folder for the searches' outputs and pareto.png."),
        threads: int = typer.Option(2, "--threads", min=1),
        time_box: float = typer.Option(0.0, "--time-box-min", min=0.0, help="Search time box (15; quick 2)."),
        train_epochs: int = typer.Option(0, "--train-epochs", min=0, help="Training epochs (10; quick 2)."),
        images: int = typer.Option(0, "--images", min=0, help="Synthetic training images (2000; quick 512)."),
        rank_archs: int = typer.Option(30, "--rank-archs", min=0, help="Archs in the zero-cost ranking study "
                                       "(0: skip)."),
        zc_proxy: str = typer.Option("naswot", "--zero-cost-proxy", help="Proxy of the zero-cost strategy."),
        devices: str = typer.Option(",".join(d for d, _ in BUDGETS), "--devices",
                                    help="Comma-separated subset of the paper budgets' devices."),
    ) -> None:
        """Searched nets (supernet, zero-cost) vs random in-band nets vs uniform QuadraNet at the paper budgets."""
        from edgedet.bench.reproduce.nas import _table, run_suite  # the experiment, when run
        from edgedet.errors import EdgedetError
        from edgedet.io.atomic import write_json_atomic

        wanted = [d.strip() for d in devices.split(",") if d.strip()]
        unknown = [d for d in wanted if d not in dict(BUDGETS)]
        if unknown or not wanted:
            raise EdgedetError(f"unknown --devices {', '.join(unknown) or devices!r}; "
                               f"choose from {', '.join(d for d, _ in BUDGETS)}")
        budgets = [(d, b) for d, b in BUDGETS if d in wanted]

        def partial(res: dict) -> None:  # keep what is done if a long run is stopped
            if json_path:
                write_json_atomic(json_path, res)

        res = run_suite(Path(out), quick, seeds, n_random, train_size, threads, budgets=budgets, on_row=partial,
                        train_epochs=train_epochs or None, images=images or None, time_box_min=time_box or None,
                        rank_archs=rank_archs, zero_cost_proxy=zc_proxy)
        _table(res)
        print(f"wrote {res['pareto_png']}")
        if json_path:
            write_json_atomic(json_path, res)
            print(f"wrote {json_path}")
