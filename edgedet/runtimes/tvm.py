"""Apache TVM (Relax VM): a compiled library (`export_library` .so) run locally with a thread
pool of exactly `threads` (TVM_NUM_THREADS), or on a remote board through TVM RPC —
`rpc://HOST:PORT` (a server) or `rpc://HOST:PORT/KEY` (a tracker) — timed on the board by
TVM's time evaluator so network latency never enters a per-inference time."""

from __future__ import annotations

import importlib.util
import os
import time

from edgedet.errors import EdgedetError
from edgedet.runtimes import Session, SessionSpec, first_line, parse_rpc
from edgedet.runtimes.inputs import make_input, resolve_shape

FORMATS = (".so", ".tar", ".dylib")
RPC_SESSION_TIMEOUT_S = 3600


def missing(device: str) -> str | None:
    if importlib.util.find_spec("tvm") is None:
        return "the tvm package is not installed (pip install 'edgedet[tvm]', i.e. apache-tvm)"
    if device not in ("cpu",) and not device.startswith("rpc://"):
        return (
            f"device '{device}' is not supported by the tvm runtime here (use cpu or rpc://HOST:PORT[/KEY])"
        )
    return None


def prepare_env(spec: SessionSpec) -> None:
    os.environ["TVM_NUM_THREADS"] = str(spec.threads)  # read once when TVM's thread pool starts


def import_runtime() -> None:
    import tvm  # noqa: F401
    from tvm import relax  # noqa: F401


def versions() -> dict:
    import tvm

    return {"tvm": tvm.__version__}


def _tensor(arr, dev):
    import tvm

    make = getattr(tvm.runtime, "tensor", None) or tvm.nd.array  # tvm.nd.array before 0.21
    return make(arr, dev)


def _bind(spec: SessionSpec, vm, dev) -> dict:
    declared = spec.declared_inputs()
    if not declared:
        raise EdgedetError(
            "a TVM library does not record its inputs and manifest.json lists none "
            '(expected "inputs": [{"name", "shape", "dtype"}])'
        )
    shapes, arrays = {}, []
    for i, d in enumerate(declared):
        shape = resolve_shape(d, spec.batch, spec.input_size)
        shapes[d.name] = shape
        arrays.append(_tensor(make_input(shape, d.dtype, spec.seed + i), dev))
    try:
        vm.set_input("main", *arrays)
    except Exception as e:
        raise EdgedetError(f"the TVM library rejected inputs {shapes}: {first_line(e)}") from None
    return shapes


class TvmLocalSession(Session):
    def __init__(self, vm, inputs: dict, info: dict):
        super().__init__(inputs=inputs, info=info)
        self.vm = vm

    def _infer(self) -> None:
        self.vm.invoke_stateful("main")  # CPU: returns when the work is done


class TvmRpcSession(Session):
    """Timing on the board: time_evaluator(number=1, repeat=n) gives n single-inference times."""

    def __init__(self, vm, dev, inputs: dict, info: dict):
        super().__init__(inputs=inputs, info=info)
        self.vm, self.dev, self._first = vm, dev, True
        self._evaluators: dict[int, object] = {}

    def run_timed(self, n: int) -> list[float]:
        if self._first:  # a true cold first run: the time evaluator would warm up before timing
            self._first = False
            t0 = time.perf_counter_ns()
            self.vm.invoke_stateful("main")
            self.dev.sync()
            return [(time.perf_counter_ns() - t0) / 1e6]
        te = self._evaluators.get(n)
        if te is None:
            te = self.vm.time_evaluator("invoke_stateful", self.dev, number=1, repeat=n, min_repeat_ms=0)
            self._evaluators[n] = te
        return [s * 1e3 for s in te("main").results]


def open(spec: SessionSpec) -> Session:
    import tvm
    from tvm import relax

    if spec.precision != "fp32":
        raise EdgedetError("a TVM library runs in the precision it was compiled in; use --precision fp32")
    if spec.device.startswith("rpc://"):
        return _open_remote(spec)
    try:
        lib = tvm.runtime.load_module(spec.model)
        vm = relax.VirtualMachine(lib, tvm.cpu())
    except Exception as e:
        raise EdgedetError(f"tvm cannot load {spec.model}: {first_line(e)}") from None
    shapes = _bind(spec, vm, tvm.cpu())
    return TvmLocalSession(
        vm,
        shapes,
        {
            "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "executor": "relax.VirtualMachine",
            "device": "cpu",
        },
    )


def connect(host: str, port: int, key: str | None):
    """A TVM RPC session: from the tracker at host:port when `key` is given, else straight to the
    server there; one-line EdgedetError when it cannot be reached."""
    from tvm import rpc

    try:
        if key:
            return rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=RPC_SESSION_TIMEOUT_S)
        return rpc.connect(host, port, session_timeout=RPC_SESSION_TIMEOUT_S)
    except Exception as e:
        what = f"tracker {host}:{port} (key '{key}')" if key else f"RPC server {host}:{port}"
        raise EdgedetError(f"cannot reach the TVM {what}: {first_line(e)}") from None


def _open_remote(spec: SessionSpec) -> Session:
    from tvm import relax

    remote = connect(*parse_rpc(spec.device))
    info = {"executor": "relax.VirtualMachine over TVM RPC", "remote": spec.device}
    info["remote_threads"] = "the board's default (no --threads given)"
    if spec.threads > 0:
        try:
            remote.get_function("runtime.config_threadpool")(1, spec.threads)  # 1 = big cores, n threads
            info["remote_threads"] = spec.threads
        except Exception as e:  # older servers lack it: the board then uses its own default
            info["remote_threads"] = f"server default ({first_line(e)})"
    name = os.path.basename(spec.model)
    try:
        remote.upload(spec.model)
        lib = remote.load_module(name)
        dev = remote.cpu()
        vm = relax.VirtualMachine(lib, dev)
    except Exception as e:
        raise EdgedetError(
            f"the board at {spec.device} cannot load {name}: {first_line(e)} "
            "(was it compiled for the board's target triple?)"
        ) from None
    shapes = _bind(spec, vm, dev)
    return TvmRpcSession(vm, dev, shapes, info)
