"""`edgedet reproduce NAME`: paper tables and performance claims, each a suite in
`edgedet.bench.reproduce` that registers its own sub-command."""

from __future__ import annotations

import importlib

import typer

# Each module defines register(reproduce_app).
SUITE_MODULES = [
    "edgedet.bench.reproduce.memory",
    "edgedet.bench.reproduce.bench_agreement",
    "edgedet.bench.reproduce.throughput",
    "edgedet.bench.reproduce.predictor_cmd",
    "edgedet.bench.reproduce.boxrpb",
    "edgedet.bench.reproduce.asag_speed",
    "edgedet.bench.reproduce.det_train",
    "edgedet.bench.reproduce.asag_nms_tuning",
    "edgedet.bench.reproduce.export_matrix",
    "edgedet.bench.reproduce.nas",
    "edgedet.bench.reproduce.mabn",
    "edgedet.bench.reproduce.kernels",
]


def register(app: typer.Typer) -> None:
    reproduce = typer.Typer(help="Reproduce a paper table or performance claim on this machine.",
                            no_args_is_help=True)
    for mod in SUITE_MODULES:
        importlib.import_module(mod).register(reproduce)
    app.add_typer(reproduce, name="reproduce")
