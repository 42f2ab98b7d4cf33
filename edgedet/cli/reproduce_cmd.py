"""`edgedet reproduce NAME`: paper tables and performance claims, each a suite in
`edgedet.bench.suites` that registers its own sub-command."""

from __future__ import annotations

import importlib

import typer

# Each module defines register(reproduce_app).
SUITE_MODULES = [
    "edgedet.bench.suites.memory",
    "edgedet.bench.suites.bench_agreement",
    "edgedet.bench.suites.throughput",
    "edgedet.bench.suites.predictor",
    "edgedet.bench.suites.boxrpb",
    "edgedet.bench.suites.asag_speed",
    "edgedet.bench.suites.det_train",
    "edgedet.bench.suites.asag_nms_tuning",
    "edgedet.bench.suites.export_matrix",
    "edgedet.bench.suites.nas",
    "edgedet.bench.suites.mabn",
    "edgedet.bench.suites.kernels",
]


def register(app: typer.Typer) -> None:
    reproduce = typer.Typer(help="Reproduce a paper table or performance claim on this machine.",
                            no_args_is_help=True)
    for mod in SUITE_MODULES:
        importlib.import_module(mod).register(reproduce)
    app.add_typer(reproduce, name="reproduce")
