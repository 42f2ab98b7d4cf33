"""OpenVINO: every property that changes timings is set explicitly (threads, streams,
inference precision, the LATENCY hint), and the compiled model's effective values are
reported back. Dynamic dimensions are reshaped to the requested batch / input size."""

from __future__ import annotations

import importlib.util

from edgedet.cpu import vector_isa
from edgedet.errors import EdgedetError
from edgedet.kernels import openvino_extension
from edgedet.precision import OPENVINO_HINT, check_openvino_cpu
from edgedet.runtimes import Session, SessionSpec, first_line
from edgedet.runtimes.inputs import InputSpec, make_input, resolve_shape

FORMATS = (".xml", ".onnx")
_DEVICES = {"cpu": "CPU", "CPU": "CPU", "GPU": "GPU", "NPU": "NPU", "gpu": "GPU", "npu": "NPU"}
REPORTED = (
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "INFERENCE_PRECISION_HINT",
    "PERFORMANCE_HINT",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "SCHEDULING_CORE_TYPE",
)


def missing(device: str) -> str | None:
    if importlib.util.find_spec("openvino") is None:
        return "the openvino package is not installed (pip install openvino)"
    if device not in _DEVICES:
        return f"device '{device}' is not an OpenVINO device (use cpu, GPU or NPU)"
    import openvino as ov

    avail = ov.Core().available_devices
    if not any(d.split(".")[0] == _DEVICES[device] for d in avail):
        return f"OpenVINO sees no {_DEVICES[device]} device here (available: {', '.join(avail) or 'none'})"
    return None


def prepare_env(spec: SessionSpec) -> None:
    return None


def import_runtime() -> None:
    import openvino  # noqa: F401


def versions() -> dict:
    import openvino as ov

    return {"openvino": ov.get_version()}


class OvSession(Session):
    def __init__(self, request, inputs: dict, info: dict):
        super().__init__(inputs=inputs, info=info)
        self.request = request

    def _infer(self) -> None:
        self.request.infer()


def _dims(pshape) -> tuple:
    return tuple(d.get_length() if d.is_static else None for d in pshape)


def open(spec: SessionSpec) -> Session:
    import openvino as ov

    extension = openvino_extension.library_for_ir(spec.model) if spec.model.endswith(".xml") else None
    core = openvino_extension.core_for(library=extension)
    try:
        model = core.read_model(spec.model)
    except Exception as e:
        why = first_line(e)
        if "edgedet." in why:  # an ONNX artifact keeping edgedet's custom ops
            why += " (bench the `--format openvino` export, or export the ONNX with --decompose)"
        raise EdgedetError(f"openvino cannot read {spec.model}: {why}") from None
    shapes, dtypes = {}, {}
    for port in model.inputs:
        name = port.get_any_name()
        dtype = port.get_element_type().to_dtype().name
        shapes[name] = resolve_shape(
            InputSpec(name, _dims(port.get_partial_shape()), dtype), spec.batch, spec.input_size
        )
        dtypes[name] = dtype
    if any(not p.get_partial_shape().is_static for p in model.inputs):
        model.reshape({n: ov.PartialShape(list(s)) for n, s in shapes.items()})
    dev = _DEVICES[spec.device]
    if dev == "CPU":
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        hint = check_openvino_cpu(spec.precision, caps, vector_isa())
    else:
        hint = OPENVINO_HINT[spec.precision]
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": str(spec.streams),
        "INFERENCE_PRECISION_HINT": hint,
    }
    if dev == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(spec.threads)
    try:
        compiled = core.compile_model(model, dev, config)
    except Exception as e:
        raise EdgedetError(f"openvino cannot compile {spec.model} for {dev}: {first_line(e)}") from None
    request = compiled.create_infer_request()
    for i, (name, shape) in enumerate(shapes.items()):
        request.set_tensor(name, ov.Tensor(make_input(shape, dtypes[name], spec.seed + i)))
    info = {"device": dev, "requested": config, "extension": str(extension) if extension else None}
    for key in REPORTED:
        try:
            value = compiled.get_property(key)
            info[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        except Exception:  # not every device exposes every property
            pass
    return OvSession(request, shapes, info)
