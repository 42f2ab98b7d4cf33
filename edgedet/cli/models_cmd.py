"""`edgedet models`: the registry with params and GFLOPs at 224×224."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models(
        json_out: bool = typer.Option(False, "--json", help="Print a JSON list of {name, params, gflops}."),
        input_size: int = typer.Option(224, "--input-size", min=32, help="Square input size for GFLOPs."),
    ) -> None:
        """List registered models with parameter counts and GFLOPs (batch 1, 1000 classes)."""
        import torch

        from edgedet import models as zoo
        from edgedet.models.complexity import FLOPS_NOTE, count_flops, count_params

        torch.set_grad_enabled(False)
        rows = []
        for name in zoo.names():
            m = zoo.create(name)
            rows.append({"name": name, "params": count_params(m),
                         "gflops": round(count_flops(m, input_size) / 1e9, 4)})
        if json_out:
            print(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"edgedet models ({input_size}×{input_size}, batch 1)", caption=FLOPS_NOTE)
        t.add_column("name")
        t.add_column("params (M)", justify="right")
        t.add_column("GFLOPs", justify="right")
        for r in rows:
            t.add_row(r["name"], f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.3f}")
        Console().print(t)
