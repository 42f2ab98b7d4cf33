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
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.exporters import tvm_import, tvm_target
from edgedet.exporters.tvm_import import ImportReport
from edgedet.exporters.tvm_schedules import QUADCONV_RULE, ScheduleReport, default_schedule_pass
from edgedet.exporters.tvm_target import CROSS_GCC, TvmTarget  # noqa: F401  (re-exported)
from edgedet.kernels import tvm_quadconv


def get_target(name: str, threads: int = 1) -> TvmTarget:
    return tvm_target.get_target(name, threads)


class _Targets(Mapping):
    """TARGETS[name] → TvmTarget (host computed from this CPU's flags when asked)."""

    def __getitem__(self, name: str) -> TvmTarget:
        if name not in tvm_target.TARGET_NAMES:
            raise KeyError(name)
        return tvm_target.get_target(name)

    def __iter__(self):
        return iter(tvm_target.TARGET_NAMES)

    def __len__(self) -> int:
        return len(tvm_target.TARGET_NAMES)


TARGETS = _Targets()


def require_tvm() -> None:
    try:
        import tvm  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except ImportError as e:
        raise EdgedetError("TVM is not installed: pip install 'edgedet[tvm]' (apache-tvm with Relax)") from e


@dataclass
class BuildReport:
    """How a library was compiled: target, schedules, tuning records applied."""

    target: TvmTarget
    schedules: ScheduleReport = field(default_factory=ScheduleReport)
    default_schedules: bool = True
    database: str | None = None  # folder of the MetaSchedule database that was applied
    seconds: float = 0.0
    imported: ImportReport = field(default_factory=ImportReport)

    @property
    def tuning(self) -> str:
        return "tuned" if self.schedules.tuned else "untuned"

    def to_json(self) -> dict:
        return {
            "tuning": self.tuning,
            "default_schedules": self.default_schedules,
            "schedules": self.schedules.to_json(),
            "fused_ops": self.fused_ops(),
            "build_s": round(self.seconds, 2),
        }

    def fused_ops(self) -> dict:
        """edgedet op → how it reached the library: the fused kernel and its schedule, or why not."""
        lanes = self.target.fp32_lanes
        scheduled = QUADCONV_RULE in self.schedules.applied.values()
        how = (f"{QUADCONV_RULE} schedule, {self.target.vector_width_bits}-bit vectors "
               f"({lanes} fp32 lanes) × {tvm_quadconv.Tile(lanes).rows} rows" if scheduled else
               "unscheduled (plain TVM lowering)" if not self.default_schedules else "tuning record")
        out = {}
        for op, count in self.imported.fused.items():
            out[op] = {"kernel": "fused TE compute (three accumulators, one read per tap)", "nodes": count,
                       "schedule": how}
        for op, why in self.imported.decomposed.items():
            out[op] = {"kernel": f"inlined to standard ops ({why})"}
        return out


def import_onnx(onnx_model, fast_math: bool = True, fused: bool = True, report: ImportReport | None = None):
    """ONNX → Relax IRModule with weights as constants. Local functions are inlined to standard
    ops, except edgedet.QuadraConv when `fused` (one fused TVM kernel, see tvm_import);
    `fast_math`: erf / exp / tanh as vectorisable polynomials (TVM's FastMathTransform);
    `report` (filled) says which edgedet ops reached Relax fused."""
    import tvm
    from tvm.relax.transform import FastMathTransform

    from edgedet.exporters.onnx_fold import fold_static

    report = ImportReport() if report is None else report
    onnx_model = tvm_import.inline_for_tvm(copy.deepcopy(onnx_model), fused, report)
    fold_static(onnx_model)  # shape arithmetic → constants (Relax needs static pads, reshapes…)
    mod = tvm_import.from_onnx(onnx_model, report)
    if fast_math:
        mod = FastMathTransform()(mod)
    return tvm.relax.transform.FoldConstant()(mod)


def fused_primfuncs(mod, target: TvmTarget):
    """The Relax module after legalisation and operator fusion (the functions that get scheduled
    or tuned): the same passes `compile_module` runs, so database keys match."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    tgt = tvm.target.Target(target.target)
    with tgt:
        return tvm.transform.Sequential(cpu.library_dispatch_passes(tgt) + cpu.legalize_passes(tgt))(mod)


def _relax_pipeline(tgt, report: BuildReport, use_database: bool):
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.relax.transform import MetaScheduleApplyDatabase

    @tvm.transform.module_pass(opt_level=0, name="EdgedetCpuPipeline")
    def _pipeline(mod, _ctx):
        with tgt:
            mod = tvm.transform.Sequential(cpu.library_dispatch_passes(tgt) + cpu.legalize_passes(tgt))(mod)
            if use_database:
                mod = MetaScheduleApplyDatabase()(mod)
            if report.default_schedules:
                vec = report.target.fp32_lanes
                mod = default_schedule_pass(tgt, vec, report.schedules)(mod)
            return tvm.transform.Sequential(cpu.dataflow_lower_passes(tgt) + cpu.finalize_passes(tgt))(mod)

    return _pipeline


def compile_module(mod, target: TvmTarget, default_schedules: bool = True, database=None):
    """Relax module → (VM executable, BuildReport); `database` a MetaSchedule Database whose
    records replace the default schedule of the functions they cover."""
    import tvm

    t0 = time.perf_counter()
    report = BuildReport(target, default_schedules=default_schedules)
    tgt = tvm.target.Target(target.target)
    pipeline = _relax_pipeline(tgt, report, database is not None)
    if database is None:
        executable = tvm.compile(mod, target=tgt, relax_pipeline=pipeline)
    else:
        with database, tvm.transform.PassContext(opt_level=3):
            executable = tvm.compile(mod, target=tgt, relax_pipeline=pipeline)
    report.seconds = time.perf_counter() - t0
    return executable, report


def build_library(
    onnx_model, target: TvmTarget, out_path: Path, default_schedules: bool | None = None, database=None,
    fused: bool = True,
) -> BuildReport:
    """Import an ONNX model into Relax, compile and export `out_path`.

    `default_schedules` None: on for every target but `host-generic` (today's plain build);
    `fused`: edgedet.QuadraConv nodes as edgedet's fused kernel (False: inlined, --decompose)."""
    require_tvm()
    from tvm.support import cc

    if target.compiler and shutil.which(target.compiler) is None:
        raise EdgedetError(
            f"cross compiler '{target.compiler}' not found: apt-get install gcc-aarch64-linux-gnu "
            "(or `make sysdeps`)"
        )
    plain = target.name == "host-generic"
    if default_schedules is None:
        default_schedules = not plain
    imported = ImportReport()
    mod = import_onnx(onnx_model, fast_math=default_schedules, fused=fused, report=imported)
    executable, report = compile_module(mod, target, default_schedules, database)
    report.imported = imported
    fcompile = cc.cross_compiler(target.compiler) if target.compiler else None
    if fcompile is None:
        executable.export_library(str(out_path))
    else:
        executable.export_library(str(out_path), fcompile=fcompile)
    return report


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
