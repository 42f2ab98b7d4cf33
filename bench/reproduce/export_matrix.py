"""`edgedet reproduce export-matrix`: every model × runtime export with its parity figures.

Rows: quadranet25-xxs, quadranet36-t, an arch.json (from `--arch`, or one sampled from the
search space with `edgedet.nas.space.sample_arch`), plain-detr-quadranet25-xxs,
asag-quadranet25-xxs. Columns: ONNX (+ ONNX Runtime), ONNX --decompose, OpenVINO f32,
TVM host, TVM Cortex-A76 (library built; parity on a host build of the same module).
Each cell is a real `export_artifact` run (seeded init, seeded inputs) in a temp folder;
fp32 cells pass at max abs error ≤ 1e-4.
"""

from __future__ import annotations

# The CLI imports this module when `edgedet` starts (its constants are option defaults), so the
# experiment's own imports stay inside its functions.
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SCHEMA_VERSION = 1
MODELS = (
    "quadranet25-xxs",
    "quadranet36-t",
    "arch-json",
    "plain-detr-quadranet25-xxs",
    "asag-quadranet25-xxs",
)
COLUMNS = {
    "onnx": {"format": "onnx"},
    "onnx-decompose": {"format": "onnx", "decompose": True},
    "openvino-f32": {"format": "openvino", "precision": "fp32"},
    "tvm-host": {"format": "tvm", "target": "host"},
    "tvm-cortex-a76": {"format": "tvm", "target": "cortex-a76"},
}


@dataclass
class Cell:
    model: str
    column: str
    passed: bool
    max_abs_err: float | None
    mean_abs_err: float | None
    atol: float | None
    rtol: float | None
    custom_ops: list[str]
    converted: dict
    runtime: str
    note: str
    seconds: float
    error: str | None = None


def sampled_arch(path: Path, seed: int = 0) -> Path:
    """Write a random architecture of the default search space (what a search could output)."""
    from edgedet.io.atomic import write_json_atomic
    from edgedet.nas.space import SearchSpace, sample_arch

    arch = sample_arch(SearchSpace(), seed)
    write_json_atomic(path, arch.to_json())
    return path


def run_cell(model: str, column: str, input_size: int, work: Path, seed: int = 0) -> Cell:
    from edgedet.errors import EdgedetError
    from edgedet.exporters.pipeline import ExportRequest, ParityFailed, export_artifact

    opts = COLUMNS[column]
    t0 = time.perf_counter()
    out = work / f"{model.replace(':', '_').replace('/', '_')}-{column}"
    try:
        res = export_artifact(ExportRequest(model=model, out=out, input_size=input_size, seed=seed, **opts))
    except (EdgedetError, ParityFailed) as e:
        pr = getattr(e, "result", None)
        return Cell(
            model,
            column,
            False,
            pr.max_abs_err if pr else None,
            pr.mean_abs_err if pr else None,
            pr.tolerance.atol if pr else None,
            pr.tolerance.rtol if pr else None,
            [],
            {},
            opts["format"],
            "",
            time.perf_counter() - t0,
            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
        )
    m = res.manifest
    return Cell(
        model,
        column,
        res.parity.passed,
        res.parity.max_abs_err,
        res.parity.mean_abs_err,
        res.parity.tolerance.atol,
        res.parity.tolerance.rtol,
        m["custom_ops"],
        m["custom_ops_converted"],
        m["runtime"]["name"],
        res.parity.note,
        round(res.seconds, 2),
    )


def run_matrix(models: list[str], columns: list[str], input_size: int, seed: int = 0, log=print) -> dict:
    import platform

    import torch

    torch.set_num_threads(2)
    cells = []
    with tempfile.TemporaryDirectory(prefix="edgedet-export-matrix-") as tmp:
        work = Path(tmp)
        for name in models:
            model = (
                f"quadranet-arch:{sampled_arch(work / 'arch.json', seed)}" if name == "arch-json" else name
            )
            for col in columns:
                log(f"{name} × {col} …")
                cell = run_cell(model, col, input_size, work, seed)
                cell.model = name
                cells.append(cell)
                log(
                    f"  {'ok' if cell.passed else 'FAIL'} max abs err {cell.max_abs_err} "
                    f"({cell.seconds:.1f} s)" + (f" {cell.error}" if cell.error else "")
                )
    return {
        "schema_version": SCHEMA_VERSION,
        "input_size": input_size,
        "seed": seed,
        "weights": "seeded initialisation (torch.manual_seed(seed)); inputs N(0,1) seeded",
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": 2},
        "all_passed": all(c.passed for c in cells),
        "cells": [asdict(c) for c in cells],
    }


def _table(doc: dict):
    from rich.table import Table

    cols = list(dict.fromkeys(c["column"] for c in doc["cells"]))
    t = Table(
        title=f"export matrix ({doc['input_size']}×{doc['input_size']}, batch 1, fp32; "
        "max abs error vs PyTorch; ✓ ≤ tolerance)"
    )
    t.add_column("model")
    for c in cols:
        t.add_column(c, justify="right")
    t.add_column("custom ops in ONNX")
    for model in dict.fromkeys(c["model"] for c in doc["cells"]):
        row = {c["column"]: c for c in doc["cells"] if c["model"] == model}
        cells = []
        for col in cols:
            c = row.get(col)
            if c is None:
                cells.append("")
            elif c["error"] and c["max_abs_err"] is None:
                cells.append("error")
            else:
                cells.append(f"{'✓' if c['passed'] else '✗'} {c['max_abs_err']:.1e}")
        ops = next((c["custom_ops"] for c in row.values() if c["custom_ops"]), [])
        t.add_row(model, *cells, ", ".join(o.removeprefix("edgedet.") for o in ops) or "-")
    return t
