"""TensorRT: deserialize a serialized engine (.engine / .plan) — or build one from an .onnx
file, which then counts as load time — bind device buffers for every I/O tensor, and time
each inference with CUDA events on the engine's stream. Needs the `tensorrt` package, an
NVIDIA GPU and a CUDA build of torch (used for buffers, streams and events)."""

from __future__ import annotations

import importlib.util

from edgedet.errors import EdgedetError
from edgedet.kernels import trt_plugins
from edgedet.runtimes import Session, SessionSpec, first_line
from edgedet.runtimes.inputs import InputSpec, make_input, resolve_shape

FORMATS = (".engine", ".plan", ".onnx")


def missing(device: str) -> str | None:
    lacks = []
    if importlib.util.find_spec("tensorrt") is None:
        lacks.append("the tensorrt Python package (pip install 'edgedet[tensorrt]')")
    if importlib.util.find_spec("torch") is None:
        lacks.append("torch with CUDA")
    else:
        import torch

        if not torch.cuda.is_available():
            lacks.append(
                f"an NVIDIA GPU visible to a CUDA build of torch (torch {torch.__version__} sees none)"
            )
    if device not in ("cuda", "GPU"):
        lacks.append(f"a CUDA device (got --device {device})")
    return ("missing " + " and ".join(lacks)) if lacks else None


def prepare_env(spec: SessionSpec) -> None:
    return None


PLUGINS = {"state": "not loaded"}


def import_runtime() -> None:
    import tensorrt  # noqa: F401
    import torch

    torch.cuda.init()  # the CUDA context is part of the baseline, not of the model
    # Engines exported with edgedet's ops call its plugins: TensorRT resolves them by name at
    # deserialisation, so they must be registered in this process (part of the engine format).
    try:
        trt_plugins.register()
        PLUGINS["state"] = "edgedet.kernels.trt_plugins registered"
    except Exception as e:  # e.g. no Triton: plain engines still run
        PLUGINS["state"] = (
            f"edgedet plugins unavailable ({first_line(e)}); engines with edgedet ops will not load"
        )


def versions() -> dict:
    import tensorrt as trt
    import torch

    return {"tensorrt": trt.__version__, "cuda": str(torch.version.cuda), "torch": torch.__version__}


def _torch_dtype(trt, dt):
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
        trt.bool: torch.bool,
        trt.uint8: torch.uint8,
    }
    for name, tdt in (("int64", torch.int64), ("bfloat16", torch.bfloat16)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    if dt not in table:
        raise EdgedetError(f"bench cannot bind a TensorRT tensor of type {dt}")
    return table[dt]


class TrtSession(Session):
    def __init__(self, context, stream, buffers: dict, engine, inputs: dict, info: dict, free_before: int):
        super().__init__(inputs=inputs, info=info)
        self.context, self.stream, self.buffers, self.engine = context, stream, buffers, engine
        self.free_before, self.min_free = free_before, free_before

    def run_timed(self, n: int) -> list[float]:
        import torch

        out = []
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(n):
            start.record(self.stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 returned False")
            end.record(self.stream)
            end.synchronize()
            out.append(start.elapsed_time(end))
        self.min_free = min(self.min_free, torch.cuda.mem_get_info()[0])
        return out

    def memory(self) -> dict | None:
        return {
            "device_used_delta_mib": (self.free_before - self.min_free) / 2**20,
            "engine_device_memory_mib": getattr(self.engine, "device_memory_size", 0) / 2**20,
            "method": "cudaMemGetInfo free memory before load minus the lowest seen after runs "
            "(device-wide: other processes on the GPU count too)",
        }


def _engine_memory(engine) -> int:
    for name in ("device_memory_size_v2", "device_memory_size"):  # v2 since TensorRT 10.1
        if hasattr(engine, name):
            return int(getattr(engine, name))
    return 0


def _build_from_onnx(trt, logger, spec: SessionSpec) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with _read(spec.model) as f:
        ok = parser.parse(f.read())
    if not ok:
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgedetError(f"TensorRT cannot parse {spec.model}: {errs[:400]}")
    config = builder.create_builder_config()
    if spec.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif spec.precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile, dynamic = builder.create_optimization_profile(), False
    for i in range(network.num_inputs):
        t = network.get_input(i)
        declared = tuple(None if d < 0 else d for d in t.shape)
        dynamic |= None in declared
        shape = resolve_shape(InputSpec(t.name, declared, "float32"), spec.batch, spec.input_size)
        profile.set_shape(t.name, shape, shape, shape)
    if dynamic:
        config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise EdgedetError(f"TensorRT could not build an engine from {spec.model} (see its log above)")
    return bytes(blob)


def _read(path: str):
    import builtins  # this module's `open` is the runtime entry point

    return builtins.open(path, "rb")


def open(spec: SessionSpec) -> Session:
    import tensorrt as trt
    import torch

    free_before = torch.cuda.mem_get_info()[0]
    logger = trt.Logger(trt.Logger.WARNING)
    if spec.model.lower().endswith(".onnx"):
        blob = _build_from_onnx(trt, logger, spec)
    else:  # a serialized engine carries its own precisions; --precision applies to builds only
        with _read(spec.model) as f:
            blob = f.read()
    runtime = trt.Runtime(logger)  # kept alive with the engine (the session holds both)
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise EdgedetError(
            f"TensorRT cannot deserialize {spec.model} (built by another TensorRT version "
            f"or for another GPU? this is TensorRT {trt.__version__})"
        )
    context = engine.create_execution_context()
    buffers, shapes = {}, {}
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    for i, name in enumerate(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT):
        tdt = _torch_dtype(trt, engine.get_tensor_dtype(name))
        declared = tuple(None if d < 0 else d for d in engine.get_tensor_shape(name))
        np_name = str(tdt).replace("torch.", "") if tdt is not torch.bfloat16 else "float32"
        shape = resolve_shape(InputSpec(name, declared, np_name), spec.batch, spec.input_size)
        if not context.set_input_shape(name, shape):
            raise EdgedetError(
                f"the engine does not accept shape {list(shape)} for input '{name}' "
                "(outside its optimisation profile)"
            )
        buffers[name] = torch.from_numpy(make_input(shape, np_name, spec.seed + i)).to("cuda", tdt)
        shapes[name] = shape
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(
                shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)), device="cuda"
            )
    for name, buf in buffers.items():
        context.set_tensor_address(name, buf.data_ptr())
    stream = torch.cuda.Stream()
    info = {
        "device": torch.cuda.get_device_name(0),
        "engine_io": names,
        "timing": "CUDA events",
        "plugins": PLUGINS["state"],
    }
    session = TrtSession(context, stream, buffers, engine, shapes, info, free_before)
    session.runtime = runtime
    return session
