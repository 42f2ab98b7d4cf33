"""ONNX → TensorRT engine with edgedet's ops as plugins (Triton kernels).

The ONNX file keeps `edgedet.QuadraConv` / `edgedet.BoxRPBAttention` nodes; the plugins
registered by `edgedet.kernels.trt_plugins` (TensorRT's Python plugin API,
`tensorrt.plugin`) implement them with the Triton kernels of `edgedet.kernels`. The engine
is built for fp32 or fp16 with an optimisation profile (min/opt/max shape per input) and a
timing cache kept next to the engine. Needs TensorRT ≥ 10.6 and a CUDA GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.kernels import trt_plugins
from edgedet.kernels.trt_plugins import plugin_onnx

INSTALL_HINT = "TensorRT is not installed: pip install 'edgedet[tensorrt]' (needs an NVIDIA GPU with CUDA)"


def require_tensorrt() -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise EdgedetError(INSTALL_HINT) from None
    import torch

    if not torch.cuda.is_available():
        raise EdgedetError("TensorRT export needs a CUDA GPU (torch.cuda.is_available() is False)")


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max shape of one input (TensorRT optimisation profile)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def batch_profiles(
    input_names: list[str], input_shape: tuple[int, ...], dynamic: bool, max_batch: int = 8
) -> list[ShapeProfile]:
    """One profile per input: batch 1..max_batch (opt = max/2) when dynamic, else fixed."""
    out = []
    for name in input_names:
        rest = tuple(input_shape[1:])
        if dynamic:
            out.append(ShapeProfile(name, (1, *rest), (max(1, max_batch // 2), *rest), (max_batch, *rest)))
        else:
            out.append(ShapeProfile(name, tuple(input_shape), tuple(input_shape), tuple(input_shape)))
    return out


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    cache_path: Path,
    precision: str,
    profiles: list[ShapeProfile],
    workspace_mib: int = 2048,
) -> dict:
    """Parse ONNX (plugins resolve edgedet nodes), build and serialize the engine."""
    import tensorrt as trt

    trt_plugins.register()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "profiles": {p.name: p.to_json() for p in profiles}}


def run_engine(engine_path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Deserialize and run the engine once on the current CUDA device (torch tensors as buffers)."""
    import tensorrt as trt
    import torch

    trt_plugins.register()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    ctx = engine.create_execution_context()
    keep, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
            keep.append(t)
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=dtype, device="cuda")
            ctx.set_tensor_address(name, t.data_ptr())
            outputs.append(t)
    stream = torch.cuda.Stream()
    if not ctx.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return [o.cpu().numpy() for o in outputs]


def build_artifact(req, ex, form, stage: Path, log) -> tuple[list[str], str, dict, object]:
    """Pipeline writer: model.onnx + model.engine + timing.cache."""

    require_tensorrt()
    (stage / "model.onnx").write_bytes(
        plugin_onnx(ex.model).SerializeToString() if ex.custom_ops else ex.serialize()
    )
    profiles = batch_profiles(form.input_names, form.input_shape, req.dynamic_batch)
    log(f"building TensorRT engine ({req.precision}, profiles {[p.to_json() for p in profiles]})")
    info = build_engine(
        stage / "model.onnx", stage / "model.engine", stage / "timing.cache", req.precision, profiles
    )
    names = form.input_names

    def run(x):
        return run_engine(stage / "model.engine", dict(zip(names, x, strict=True)))

    runtime = {
        "name": "tensorrt",
        "version": info["tensorrt"],
        "device": "cuda",
        "profiles": info["profiles"],
        "plugins": "edgedet.kernels.trt_plugins (Triton kernels)",
    }
    return ["model.onnx", "model.engine", "timing.cache"], "model.engine", runtime, run
