"""`edgedet reproduce NAME`: paper tables and performance claims, each a suite in
`edgedet.bench.reproduce` that registers its own sub-command."""

from __future__ import annotations

import importlib

import typer

# Each module defines register(reproduce_app).
SUITE_MODULES = [
    "edgedet.bench.reproduce.memory_cmd",
    "edgedet.bench.reproduce.bench_agreement_cmd",
    "edgedet.bench.reproduce.throughput_cmd",
    "edgedet.bench.reproduce.predictor_cmd",
    "edgedet.bench.reproduce.boxrpb_cmd",
    "edgedet.bench.reproduce.asag_speed_cmd",
    "edgedet.bench.reproduce.det_train_cmd",
    "edgedet.bench.reproduce.asag_nms_tuning_cmd",
    "edgedet.bench.reproduce.export_matrix_cmd",
    "edgedet.bench.reproduce.nas_cmd",
    "edgedet.bench.reproduce.mabn_cmd",
    "edgedet.bench.reproduce.kernels_cmd",
    "edgedet.bench.reproduce.tvm_cmd",
]


def register(app: typer.Typer) -> None:
    reproduce = typer.Typer(help="Reproduce a paper table or performance claim on this machine.",
                            no_args_is_help=True)
    for mod in SUITE_MODULES:
        importlib.import_module(mod).register(reproduce)
    app.add_typer(reproduce, name="reproduce")
