"""`edgedet predict`: predicted latency of a model on a device profile, with the
per-kernel breakdown (top costs first). Every number printed says it is predicted, and
by which profile."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgedet.cpu import vector_isa
from edgedet.errors import EdgedetError


def fast_create(name: str):
    """A registered model with uninitialised (zeroed) weights: prediction needs shapes only,
    and skipping weight init saves seconds on the big variants."""
    import torch

    from edgedet import models as zoo

    with torch.device("meta"):
        m = zoo.create(name)
    m = m.to_empty(device="cpu")
    with torch.no_grad():
        for t in m.state_dict().values():
            t.zero_()
    return m.eval()


def run_prediction(
    model: str | None,
    onnx: Path | None,
    arch: Path | None,
    device: str,
    input_size: int | None,
    batch: int | None,
    allow_unknown: bool,
):
    """Resolve the model source and predict it; returns (Prediction, description).

    `input_size` None: an ONNX file's own static H×W (required when it is dynamic), 224 for
    registered models and arch files. `batch` None: the file's batch, else 1."""
    from edgedet.profiles import predict_module, predict_onnx
    from edgedet.profiles.nnmeter import is_nnmeter, predict_nnmeter

    given = [x for x in (model, onnx, arch) if x is not None]
    if len(given) != 1:
        raise EdgedetError("give exactly one of MODEL, --onnx PATH or --arch arch.json")
    if is_nnmeter(device):
        size = input_size or 224
        return predict_nnmeter(device, model=model, onnx=onnx, arch=arch, input_size=size), device
    from edgedet.profiles import load_profile

    prof = load_profile(device)
    warning = prof.isa_warning(vector_isa())
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if onnx is not None:
        if not onnx.is_file():
            raise EdgedetError(f"ONNX file not found: {onnx}")
        return predict_onnx(onnx, prof, allow_unknown, batch=batch, input_size=input_size), str(onnx)
    if arch is not None:
        if not arch.is_file():
            raise EdgedetError(f"arch file not found: {arch}")
        name = f"quadranet-arch:{arch}"
    else:
        from edgedet import models as zoo

        if model not in zoo.names() and not str(model).startswith("quadranet-arch:"):
            raise EdgedetError(f"unknown model {model!r}; see `edgedet models`")
        name = model
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    m = fast_create(name)
    size = input_size or 224
    return predict_module(m, (batch or 1, 3, size, size), prof, allow_unknown), name


def print_prediction(pred, what: str, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    p = pred.profile
    cal = p.get("calibration", {})
    basis = cal.get("error_basis", "held-out")
    err = (
        f"{basis} MAPE {100 * cal['mape']:.1f}%, {100 * cal['within10']:.0f}% within ±10%"
        if "mape" in cal
        else "error unknown"
    )
    rt = p.get("runtime", {})
    rt_name = rt.get("name", "?") if isinstance(rt, dict) else str(rt)
    tag = f"predicted with {p.get('kind', '?')} profile '{p.get('id', pred.profile_id)}'"
    t = Table(title=f"{what}: {pred.latency_ms:.3f} ms ({tag}; {rt_name}; {err})")
    for c in ("#", "op", "fused nodes", "input", "output", "k/s/g", "MFLOPs", "KB r/w", "predicted ms", "%"):
        t.add_column(c, justify="right" if c in ("#", "MFLOPs", "KB r/w", "predicted ms", "%") else "left")
    ks = sorted(pred.kernels, key=lambda k: -(k.latency_ms or 0.0))
    total = pred.latency_ms or 1.0
    for i, k in enumerate(ks[:top]):
        geo = (
            ""
            if k.kernel_size is None
            else f"{'x'.join(map(str, k.kernel_size))}/{k.stride[0] if k.stride else 1}/{k.groups}"
        )
        t.add_row(
            str(i + 1),
            k.op,
            "+".join(k.nodes)[:40],
            " ".join("x".join(map(str, s)) for s in k.input_shapes)[:28],
            " ".join("x".join(map(str, s)) for s in k.output_shapes)[:28],
            geo,
            f"{k.flops / 1e6:.2f}",
            f"{k.bytes_read / 1e3:.0f}/{k.bytes_written / 1e3:.0f}",
            f"{k.latency_ms:.4f}",
            f"{100 * (k.latency_ms or 0) / total:.1f}",
        )
    con = Console(width=max(Console().width, 150))
    con.print(t)
    if len(ks) > top:
        con.print(f"… {len(ks) - top} more kernels (use --top or --json for all)")
    if pred.fixed_ms:
        con.print(f"includes {pred.fixed_ms:.3f} ms per-inference fixed cost (predicted)")
    con.print(f"total {pred.latency_ms:.3f} ms — {tag}, {len(ks)} kernels")


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        model: str = typer.Argument(None, help="Registered model name (see `edgedet models`)."),
        onnx: Path = typer.Option(None, "--onnx", help="ONNX file (weights may be absent)."),
        arch: Path = typer.Option(None, "--arch", help="arch.json written by `edgedet search`."),
        device: str = typer.Option(
            ..., "--device", help="Profile id, path to a profile JSON, or nn-meter:<name>."
        ),
        input_size: int = typer.Option(
            None,
            "--input-size",
            min=16,
            help="Square input size. --onnx: a static H×W in the file is used and a different "
            "--input-size is refused; a dynamic graph needs it. Models/--arch: default 224.",
        ),
        batch: int = typer.Option(None, "--batch", min=1, help="Batch (default: the ONNX file's, else 1)."),
        json_out: Path = typer.Option(None, "--json", help="Write the prediction as JSON here."),
        allow_unknown: bool = typer.Option(
            False, "--allow-unknown", help="Price ops the profile has no model for at 0 ms (warns)."
        ),
        top: int = typer.Option(15, "--top", min=1, help="Kernels shown in the table."),
    ) -> None:
        """Predict latency on a device profile: total and per-kernel table (top costs first)."""
        import logging

        logging.basicConfig(format="%(message)s")
        pred, what = run_prediction(model, onnx, arch, device, input_size, batch, allow_unknown)
        if pred.unknown_ops:
            typer.secho(
                f"WARNING: no cost model for {', '.join(pred.unknown_ops)}: priced at 0 ms, "
                "the prediction is too low",
                fg="red",
                err=True,
            )
        shp = pred.input_shape or (batch or 1, 3, input_size or 224, input_size or 224)
        hw = "×".join(map(str, shp[2:])) or "?"
        print_prediction(pred, f"{what} (batch {shp[0]}, {hw})", top)
        if json_out is not None:
            from edgedet.io.atomic import write_json_atomic

            doc = pred.to_json()
            square = len(shp) == 4 and shp[2] == shp[3]
            doc.update({"model": what, "batch": shp[0], "input_size": shp[2] if square else list(shp[2:])})
            write_json_atomic(json_out, doc)
