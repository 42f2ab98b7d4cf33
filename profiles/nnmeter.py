"""`--device nn-meter:<predictor>`: use nn-Meter's own kernel predictors when the user has
the `nn_meter` package and that predictor's files locally. Never downloads (nn-Meter would
fetch them from the internet on first use; edgedet runs offline)."""

from __future__ import annotations

import os
from pathlib import Path

from edgedet import models as zoo
from edgedet.errors import EdgedetError
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.predict import Prediction

PREFIX = "nn-meter:"
HOW_TO = (
    "install it with `pip install nn-meter` and fetch its predictors once on a machine with network "
    "(`nn-meter predict --predictor {name} --onnx any.onnx` downloads them to ~/.nn_meter/data/predictor), "
    "then rerun; note nn-Meter prices LayerNorm, GELU and other ops it does not know at 0 ms"
)


def is_nnmeter(device: str) -> bool:
    return device.startswith(PREFIX)


def _predictor_files(name: str) -> tuple[str | None, list[Path]]:
    """(version, files) of an nn-Meter predictor that is present locally."""
    import nn_meter  # noqa: F401  (ImportError handled by the caller)
    from nn_meter import list_latency_predictors

    cfgs = [p for p in list_latency_predictors() if p.get("name") == name]
    if not cfgs:
        known = sorted({p.get("name", "?") for p in list_latency_predictors()})
        raise EdgedetError(f"nn-Meter has no predictor {name!r}; its predictors: {', '.join(known)}")
    cfg = cfgs[-1]
    roots = []
    loc = str(cfg.get("package_location", "~/.nn_meter/data/predictor"))
    roots.append(Path(os.path.expanduser(loc)))
    try:
        from nn_meter.utils import get_user_data_folder

        roots.append(Path(get_user_data_folder()) / loc)
    except Exception:  # older nn-Meter releases
        pass
    files: list[Path] = []
    for r in roots:
        if r.is_dir():
            files += [f for f in r.rglob("*") if f.is_file() and name in str(f)]
    return cfg.get("version"), files


def predict_nnmeter(device: str, model=None, onnx=None, arch=None, input_size: int = 224):
    """Predict with nn-Meter; returns an edgedet Prediction with a single whole-model kernel."""

    name = device[len(PREFIX) :]
    try:
        import nn_meter
    except ImportError:
        raise EdgedetError(
            f"nn-Meter is not installed; to use --device {device}, " + HOW_TO.format(name=name)
        ) from None
    version, files = _predictor_files(name)
    if not files:
        raise EdgedetError(f"nn-Meter predictor {name!r} is not present locally; " + HOW_TO.format(name=name))
    predictor = nn_meter.load_latency_predictor(name, version)
    if onnx is not None:
        import onnx as onnx_lib

        ms = float(predictor.predict(onnx_lib.load(str(onnx)), model_type="onnx"))
    else:
        import torch

        net = zoo.create(f"quadranet-arch:{arch}" if arch is not None else model).eval()
        with torch.no_grad():
            ms = float(predictor.predict(net, model_type="torch", input_shape=(1, 3, input_size, input_size)))
    k = Kernel(
        op="model",
        name=str(model or onnx or arch),
        nodes=["nn-Meter"],
        input_shapes=[],
        output_shapes=[],
        flops=0.0,
        bytes_read=0.0,
        bytes_written=0.0,
        latency_ms=ms,
    )
    prof = {
        "id": device,
        "kind": "predicted",
        "runtime": {"name": f"nn-Meter {name} v{version}"},
        "calibration": {"note": "nn-Meter's own reported accuracy; unknown ops count 0 ms"},
    }
    return Prediction(ms, [k], device, 0.0, [], prof)
