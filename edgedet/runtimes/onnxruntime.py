"""ONNX Runtime: one intra-op pool of exactly `threads`, inter-op 1, sequential execution,
all graph optimisations; CUDA through its execution provider with I/O bound on the device.

`session()` is the one ONNX Runtime session builder: export parity, host profiling, the
latency predictor's graph passes and bench all build theirs here."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.runtimes import Session, SessionSpec, first_line
from edgedet.runtimes.inputs import InputSpec, make_input, resolve_shape

FORMATS = (".onnx",)

_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
    "tensor(bfloat16)": "bfloat16",
}


def missing(device: str) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "the onnxruntime package is not installed (pip install onnxruntime)"
    if device not in ("cpu", "cuda"):
        return f"device '{device}' is not supported by the onnxruntime runtime (use cpu or cuda)"
    if device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (
                "this onnxruntime build has no CUDAExecutionProvider (pip install onnxruntime-gpu) "
                "or no CUDA GPU is visible"
            )
    return None


def prepare_env(spec: SessionSpec) -> None:
    return None


def import_runtime() -> None:
    import onnxruntime  # noqa: F401


def versions() -> dict:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__}


class OrtSession(Session):
    def __init__(self, sess, feeds: dict, inputs: dict, info: dict, binding=None):
        super().__init__(inputs=inputs, info=info)
        self.sess, self.feeds, self.binding = sess, feeds, binding

    def _infer(self) -> None:
        if self.binding is not None:
            self.sess.run_with_iobinding(self.binding)  # synchronises the device before returning
        else:
            self.sess.run(None, self.feeds)


def session(
    model: str | bytes,
    threads: int = 1,
    *,
    optimize: bool = True,
    device: str = "cpu",
    profile_prefix: str | None = None,
    save_optimized: str | None = None,
    config: dict[str, str] | None = None,
):
    """The one place edgedet builds an ONNX Runtime session: `threads` intra-op threads, one
    inter-op thread, sequential execution, warnings off, all graph optimisations (or none, for
    a reference run). `profile_prefix` turns on ORT's per-node profiler; `save_optimized` writes
    the optimised graph there (with `config` entries, e.g. where its initialisers go)."""
    import onnxruntime as ort  # lazily: `missing()` must be able to report it absent

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.log_severity_level = 3  # e.g. the expected "hardware-specific optimised model" warning
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if save_optimized is not None:
        so.optimized_model_filepath = save_optimized
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(model, so, providers=providers)


def bind(sess, batch: int | None = 1, input_size: int | None = None, seed: int = 0, device: str = "cpu") -> OrtSession:
    """Random inputs of the model's declared shapes bound to `sess` (on the GPU for cuda);
    `batch` None keeps a static batch (1 where it is dynamic)."""
    import onnxruntime as ort

    feeds, shapes = {}, {}
    for i, inp in enumerate(sess.get_inputs()):
        dtype = _TYPES.get(inp.type)
        if dtype is None:
            raise EdgedetError(f"model input '{inp.name}' has type {inp.type}, which bench cannot feed")
        shape = resolve_shape(InputSpec(inp.name, tuple(inp.shape), dtype), batch, input_size)
        feeds[inp.name] = make_input(shape, dtype, seed + i)
        shapes[inp.name] = shape
    info = {
        "intra_op_num_threads": sess.get_session_options().intra_op_num_threads,
        "inter_op_num_threads": 1,
        "execution_mode": "sequential",
        "graph_optimization_level": "all",
        "providers": sess.get_providers(),
    }
    binding = None
    if device == "cuda":
        binding = sess.io_binding()
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0)
            )
        for out in sess.get_outputs():
            binding.bind_output(out.name, "cuda")
    return OrtSession(sess, feeds, shapes, info, binding)


def open(spec: SessionSpec) -> Session:
    if spec.precision != "fp32":
        raise EdgedetError(
            "onnxruntime runs a model in the precision it was exported in; use --precision fp32 "
            "(export an fp16 ONNX to measure fp16)"
        )
    try:
        sess = session(spec.model, spec.threads, device=spec.device)
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise EdgedetError(f"onnxruntime cannot load {spec.model}: {first_line(e)}") from None
    return bind(sess, spec.batch, spec.input_size, spec.seed, spec.device)
