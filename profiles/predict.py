"""Predict latency of an ONNX model or an nn.Module on a device profile: kernels → cost →
sum. Additive over kernels, so a network ≈ stem + Σ blocks + downsamples + head."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

from edgedet.errors import EdgedetError
from edgedet.profiles.cost import fixed_us, kernel_us
from edgedet.profiles.fusion import FusionRules, fuse
from edgedet.profiles.graph import build_graph, data_input_dims, load_model, resolve_input_size, set_batch
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.layout import REORDER_CLASS, onnxruntime_reorders
from edgedet.profiles.loader import Profile, load_profile
from edgedet.profiles.module_graph import record

log = logging.getLogger("edgedet.latency")


@dataclass
class Prediction:
    """Predicted latency. `latency_ms` = Σ kernel latencies + `fixed_ms` (per-inference
    cost of the runtime, e.g. host↔device copies; 0 for most profiles)."""

    latency_ms: float
    kernels: list[Kernel]
    profile_id: str
    fixed_ms: float = 0.0
    unknown_ops: list[str] = field(default_factory=list)
    profile: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()  # the data input's shape as priced (batch first)

    @property
    def kernel_ms(self) -> float:
        return self.latency_ms - self.fixed_ms

    def to_json(self) -> dict:
        order = sorted(self.kernels, key=lambda k: -(k.latency_ms or 0.0))
        return {
            "schema_version": 1,
            "predicted": True,
            "latency_ms": self.latency_ms,
            "fixed_ms": self.fixed_ms,
            "input_shape": list(self.input_shape),
            "profile": self.profile,
            "unknown_ops": self.unknown_ops,
            "kernels": [k.to_json() for k in order],
        }


def _as_profile(profile: Profile | str) -> Profile:
    return profile if isinstance(profile, Profile) else load_profile(profile)


def profile_summary(p: Profile) -> dict:
    return {
        "id": p.id,
        "kind": p.kind,
        "runtime": p.runtime,
        "calibration": {
            "mape": p.calibration["mape"],
            "within10": p.calibration["within10"],
            "method": p.calibration["method"],
            **{
                k: p.calibration[k]
                for k in ("error_basis", "lofo_mape", "loo_mape", "mean_signed_error")
                if k in p.calibration
            },
        },
    }


def priced_model(model_or_path: Any, batch: int | None = None, input_size: int | None = None):
    """The ModelProto at the shape it is priced at. A static H×W in the file is used as is
    (a different `input_size` is an error); a dynamic one takes `input_size`. `batch`
    re-batches (None: the file's batch, else 1)."""
    model = load_model(model_or_path)
    size = resolve_input_size(model, input_size)
    dims = data_input_dims(model)[1]
    file_batch = dims[0] if dims else None
    if size is not None or (batch is not None and batch != file_batch) or (dims and file_batch is None):
        model = set_batch(model, batch or file_batch or 1, size)
    return model


def kernels_of(
    model_or_path: Any, profile: Profile, batch: int | None = None, input_size: int | None = None
) -> tuple[list[Kernel], list[str]]:
    """Fused kernels of an ONNX model under a profile's fusion rules (+ unknown op types),
    at the shape `priced_model` resolves."""
    model = priced_model(model_or_path, batch, input_size)
    g = build_graph(model)
    kernels, unknown = fuse(g, FusionRules.from_json(profile.fusion), profile.element_bytes)
    if REORDER_CLASS in profile.predictor.get("classes", {}) and profile.runtime_name == "onnxruntime":
        kernels += onnxruntime_reorders(model, g.shapes, profile.element_bytes)
    return kernels, unknown


def price(
    kernels: list[Kernel], profile: Profile, allow_unknown: bool = False, unknown_ops: list[str] | None = None
) -> Prediction:
    """Cost every kernel; a kernel class or op type the profile cannot price is an error
    unless `allow_unknown` (then a loud warning names them and they count 0 ms)."""
    missing = sorted(set(unknown_ops or []))
    total = 0.0
    for k in kernels:
        t = None if k.op == "unknown" else kernel_us(k, profile)
        if t is None:
            if k.op != "unknown":
                missing.append(f"{k.op} ({'+'.join(k.nodes)})")
            k.latency_ms = 0.0
            continue
        k.latency_ms = t / 1e3
        total += k.latency_ms
    missing = sorted(set(missing))
    if missing:
        msg = f"profile '{profile.id}' has no cost model for: {', '.join(missing)}"
        if not allow_unknown:
            raise EdgedetError(msg + " (use --allow-unknown / allow_unknown=True to price them at 0 ms)")
        log.warning("WARNING: %s — priced at 0 ms, the prediction is too low", msg)
    fx = fixed_us(profile) / 1e3
    return Prediction(total + fx, kernels, profile.id, fx, missing, profile_summary(profile))


def predict_onnx(
    model_or_path: Any,
    profile: Profile | str,
    allow_unknown: bool = False,
    batch: int | None = None,
    input_size: int | None = None,
) -> Prediction:
    """Predict an ONNX model (path, bytes or ModelProto; weights may be absent) at the
    file's static input size, or at `input_size` when the file's H×W is dynamic."""
    p = _as_profile(profile)
    model = priced_model(model_or_path, batch, input_size)
    kernels, unknown = kernels_of(model, p)
    pred = price(kernels, p, allow_unknown, unknown)
    pred.input_shape = tuple(d or 0 for d in data_input_dims(model)[1])
    return pred


def export_onnx_bytes(module, input_shape: tuple[int, ...]) -> bytes:
    """In-memory structure-only ONNX export (TorchScript exporter: ~10× faster than dynamo)."""
    import warnings

    import torch

    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros(*input_shape),),
                buf,
                dynamo=False,
                opset_version=17,
                export_params=False,
                do_constant_folding=False,
                input_names=["input"],
                output_names=["output"],
            )
    except EdgedetError:
        raise
    except Exception as e:
        raise EdgedetError(f"cannot export the module to ONNX for prediction: {e}") from None
    finally:
        module.train(was_training)
    return buf.getvalue()


def predict_module(
    module,
    input_shape: tuple[int, ...],
    profile: Profile | str,
    allow_unknown: bool = False,
    via: str = "meta",
) -> Prediction:
    """Predict an nn.Module for an input of `input_shape` (batch included).

    via="meta": record the aten ops on meta tensors (fast, no compute); falls back to the
    exporter when the module cannot run on meta tensors. via="onnx": in-memory ONNX export."""
    if len(input_shape) < 2 or any(int(d) <= 0 for d in input_shape):
        raise EdgedetError(f"input_shape must include the batch, e.g. (1, 3, 224, 224); got {input_shape}")
    if via not in ("meta", "onnx"):
        raise EdgedetError(f"via must be 'meta' or 'onnx', got {via!r}")
    shape = tuple(int(d) for d in input_shape)
    p = _as_profile(profile)
    if via == "meta":
        for device in ("meta", "cpu"):
            try:
                g = record(module, shape, device)
            except Exception as e:  # data-dependent shapes / Python control flow on values
                log.info("recording on %s failed (%s)", device, e)
                continue
            kernels, unknown = fuse(g, FusionRules.from_json(p.fusion), p.element_bytes)
            pred = price(kernels, p, allow_unknown, unknown)
            pred.input_shape = shape
            return pred
    return predict_onnx(export_onnx_bytes(module, shape), p, allow_unknown)
