"""ONNX → Apache TVM (Relax) shared library for the host or a Cortex-A76 board.

The ONNX model is inlined to standard ops first (TVM's ONNX importer does not run local
functions), imported with `tvm.relax.frontend.onnx.from_onnx` with the weights embedded
as constants, compiled, and exported as one `model.so` (no separate params file): the host
build with the system compiler, the Cortex-A76 build (aarch64, NEON) with Debian's
`aarch64-linux-gnu-gcc`. Remote runs go through TVM RPC, as on a Raspberry Pi 5.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedet.errors import EdgedetError


@dataclass(frozen=True)
class TvmTarget:
    """A named compile target: TVM target (JSON-dict form) and the C compiler that links it."""

    name: str
    target: dict
    compiler: str | None  # None: TVM's default host compiler
    elf_machine: str  # "x86_64" / "aarch64" as in `file`/ELF e_machine

    def description(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.target.items())


CROSS_GCC = "aarch64-linux-gnu-gcc"
TARGETS = {
    "host": TvmTarget("host", {"kind": "llvm"}, None, "host"),
    "cortex-a76": TvmTarget(
        "cortex-a76",
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]},
        CROSS_GCC,
        "aarch64",
    ),
}


def get_target(name: str) -> TvmTarget:
    if name not in TARGETS:
        raise EdgedetError(f"unknown TVM target '{name}' (choose {', '.join(TARGETS)})")
    return TARGETS[name]


def require_tvm() -> None:
    try:
        import tvm  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except ImportError as e:
        raise EdgedetError("TVM is not installed: pip install 'edgedet[tvm]' (apache-tvm with Relax)") from e


def build_library(onnx_model, target: TvmTarget, out_path: Path) -> None:
    """Import an ONNX model (standard ops only) into Relax, compile and export `out_path`."""
    require_tvm()
    import tvm
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.support import cc

    if target.compiler and shutil.which(target.compiler) is None:
        raise EdgedetError(
            f"cross compiler '{target.compiler}' not found: apt-get install gcc-aarch64-linux-gnu "
            "(or `make sysdeps`)"
        )
    if len(onnx_model.functions):
        raise ValueError("inline the ONNX local functions before TVM import (onnx.inliner)")
    from edgedet.exporters.onnx_fold import fold_static

    onnx_model = copy.deepcopy(onnx_model)
    fold_static(onnx_model)  # shape arithmetic → constants (Relax needs static pads, reshapes…)
    mod = from_onnx(onnx_model, keep_params_in_input=False)
    executable = tvm.compile(mod, target=tvm.target.Target(target.target))
    fcompile = cc.cross_compiler(target.compiler) if target.compiler else None
    if fcompile is None:
        executable.export_library(str(out_path))
    else:
        executable.export_library(str(out_path), fcompile=fcompile)


def run_library(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Load a host library and run `main` on the local CPU (Relax VM)."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    return _outputs(vm["main"](*[tvm.runtime.tensor(a) for a in inputs]))


def _outputs(res) -> list[np.ndarray]:
    if hasattr(res, "numpy"):
        return [res.numpy()]
    return [r.numpy() for r in res]


def elf_info(path: Path) -> dict:
    """Class, type and machine of an ELF file read from its header (no `file` needed)."""
    head = Path(path).read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return {"elf": False}
    little = head[5] == 1
    order = "little" if little else "big"
    e_type = int.from_bytes(head[16:18], order)
    e_machine = int.from_bytes(head[18:20], order)
    machines = {62: "x86_64", 183: "aarch64", 40: "arm"}
    return {
        "elf": True,
        "class": 64 if head[4] == 2 else 32,
        "shared_object": e_type == 3,
        "machine": machines.get(e_machine, str(e_machine)),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def loopback_rpc_server(timeout_s: float = 30.0):
    """A `tvm.exec.rpc_server` child process on 127.0.0.1; yields a connected session."""
    from tvm import rpc

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server forks a worker per session: stop the whole group
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                session = rpc.connect("127.0.0.1", port)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("TVM RPC server did not start on loopback") from None
                time.sleep(0.2)
        yield session
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def run_remote(session, path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Upload a library over an RPC session, run `main` on the remote CPU, fetch outputs."""
    import tvm
    from tvm import relax

    session.upload(str(path))
    lib = session.load_module(Path(path).name)
    dev = session.cpu()
    vm = relax.VirtualMachine(lib, dev)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    # set_input/invoke_stateful/get_outputs: a tuple result (detectors) stays a remote object
    # when `main` is called directly; get_outputs fetches its fields one by one.
    vm.set_input("main", *args)
    vm.invoke_stateful("main")
    return _outputs(vm.get_outputs("main"))
