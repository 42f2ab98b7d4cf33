"""A child process that builds or times one MetaSchedule candidate at a time under a wall-clock
limit: a candidate whose LLVM build or run never ends is killed with its process (and recorded as
an error) instead of stalling a tuning run, which the in-process builder and runner could not do.

The child imports TVM and nothing else of edgedet (TVM itself loads PyTorch where it is
installed, so the child imports the tensor intrinsics as the parent does), talks over a pair of pipes
(length-prefixed pickles of plain values: IRModules as TVM JSON) and is started again after a
kill. The parent waits with `select`, so the limit holds whatever the child is doing.
"""

from __future__ import annotations

import inspect
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 180.0  # importing TVM and its tensor intrinsics in a fresh process, under load
BUILD_TIMEOUT_S = 120.0  # one candidate's lowering + LLVM + link
RUN_TIMEOUT_S = 60.0  # one candidate's argument allocation + time evaluator


class CandidateTimeout(Exception):
    """A candidate's build or run went past its limit; its process was killed."""


class Sandbox:
    """The parent's end: `call(op, *args, timeout_s=...)` runs `op` ("build" / "run") in the child."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(to_child_r), str(from_child_w)],
                                      pass_fds=(to_child_r, from_child_w), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._writer, self._reader = os.fdopen(to_child_w, "wb"), from_child_r
        self._exchange("ready", (), START_TIMEOUT_S)

    def close(self) -> None:
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        try:
            self._writer.close()
        except OSError:  # the child died with a request unread
            pass
        os.close(self._reader)
        self._proc = None

    def call(self, op: str, *args, timeout_s: float):
        if self._proc is None:
            self._start()
        return self._exchange(op, args, timeout_s)

    def _exchange(self, op: str, args: tuple, timeout_s: float):
        try:
            _write(self._writer, (op, args))
            size = struct.unpack("<q", self._read_exactly(8, timeout_s))[0]
            ok, value = pickle.loads(self._read_exactly(size, timeout_s))
        except CandidateTimeout:
            self.close()
            raise CandidateTimeout(f"{op} past its {timeout_s:g} s limit: the candidate process was killed") from None
        except (OSError, EOFError):
            self.close()
            raise RuntimeError(f"the candidate process died during {op}") from None
        if not ok:
            raise RuntimeError(value)
        return value

    def _read_exactly(self, n: int, timeout_s: float) -> bytes:
        out, deadline = b"", time.monotonic() + timeout_s
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reader], [], [], left)[0]:
                raise CandidateTimeout
            chunk = os.read(self._reader, n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out


def _write(stream, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<q", len(data)) + data)
    stream.flush()


def _frames_without_far_source(context: int = 1) -> list:
    """`inspect.stack()` with source lines read for the three innermost frames only (TVMScript's
    parser reads `code_context` of frame 2 and the frame objects of the rest)."""
    frame, out = sys._getframe(1), []
    while frame is not None:
        if len(out) < 3:
            tb = inspect.getframeinfo(frame, context)
            out.append(inspect.FrameInfo(frame, tb.filename, tb.lineno, tb.function, tb.code_context, tb.index,
                                         positions=tb.positions))
        else:
            out.append(inspect.FrameInfo(frame, frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name,
                                         None, None))
        frame = frame.f_back
    return out


def import_tensor_intrinsics() -> None:
    """Import `tvm.s_tir.tensor_intrin` (MetaSchedule's first tune context and build do) with a
    cheap `inspect.stack`: its ~250 TVMScript intrinsics each call `inspect.stack()`, whose source
    look-ups scan every loaded module per frame — with PyTorch loaded (~2000 modules) that import
    took 26 s of nice-19 time here, 5 s with this stack (docs/export.md, TVM "Tuning")."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    real = inspect.stack
    inspect.stack = _frames_without_far_source
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = real


# --- the child's side -------------------------------------------------------------------------

def _build(mod_json: str, target: dict, compiler: str | None) -> str:
    """Lower and compile a candidate; the path of its shared library (in a fresh temp folder)."""
    import tvm
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.support import cc

    lib = default_build(tvm.ir.load_json(mod_json), tvm.target.Target(target), None)
    path = os.path.join(tempfile.mkdtemp(prefix="edgedet-ms-"), "tmp.so")
    lib.export_library(path, fcompile=cc.cross_compiler(compiler) if compiler else None)
    return path


def evaluator_config(evaluator: tuple[int, int, int]):
    """MetaSchedule's EvaluatorConfig for (number, repeat, min_repeat_ms)."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig

    number, repeat, min_repeat_ms = evaluator
    return EvaluatorConfig._normalized(EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms))


def _run(path: str, args_info: list, evaluator: tuple[int, int, int]) -> list[float]:
    """Time a built candidate on this CPU: seconds per call, one per repeat."""
    import tvm
    from tvm.s_tir.meta_schedule.runner.local_runner import default_alloc_argument, default_run_evaluator

    dev = tvm.cpu()
    args = default_alloc_argument(dev, args_info, 1)
    return [float(s) for s in default_run_evaluator(tvm.runtime.load_module(path), dev,
                                                    evaluator_config(evaluator), args)]


def _ready() -> bool:
    import_tensor_intrinsics()  # MetaSchedule's builds need them
    return True


OPS = {"ready": _ready, "build": _build, "run": _run}


def _serve(reader_fd: int, writer_fd: int) -> None:
    reader, writer = os.fdopen(reader_fd, "rb"), os.fdopen(writer_fd, "wb")
    while len(head := reader.read(8)) == 8:
        op, args = pickle.loads(reader.read(struct.unpack("<q", head)[0]))
        try:
            answer = (True, OPS[op](*args))
        except Exception as e:  # an invalid candidate: the parent records the message
            answer = (False, f"{type(e).__name__}: {str(e)[-300:]}")
        _write(writer, answer)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
