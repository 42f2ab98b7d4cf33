"""How MetaSchedule candidates are built and timed for edgedet: one by one in a time-limited child
process (`tvm_sandbox`; MetaSchedule's popen-worker pools timed out every build on this 2-core
machine), on this CPU or on a board behind a TVM RPC tracker (`HOST:PORT/KEY`), with the
cross-compiler as builder for a board.

`time_default_vs_tuned` times a task's rule-based default schedule (`tvm_schedules`) and its best
tuning record through the same builder and runner, interleaved, so a record found with few trials
is shipped only where it beats the schedule an untuned build would get.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass

from edgedet.errors import EdgedetError
from edgedet.exporters.tvm_sandbox import (
    BUILD_TIMEOUT_S,
    RUN_TIMEOUT_S,
    CandidateTimeout,
    Sandbox,
    evaluator_config,
    import_tensor_intrinsics,
)
from edgedet.exporters.tvm_schedules import schedule_function
from edgedet.exporters.tvm_target import TvmTarget
from edgedet.runtimes import tvm as tvm_runtime

EVALUATOR = (3, 1, 20)  # time evaluator's (number, repeat, min_repeat_ms) per candidate
COMPARE_ROUNDS = 3  # default / tuned timed alternately this many times, medians compared


@dataclass(frozen=True)
class Tracker:
    """A TVM RPC tracker and the key its boards registered under."""

    host: str
    port: int
    key: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.key}"


def parse_rpc(value: str, need_key: bool) -> tuple[str, int, str | None]:
    """`HOST:PORT` (an RPC server) or `HOST:PORT/KEY` (a tracker) → (host, port, key or None);
    one-line error otherwise, or when `need_key` (tuning needs a tracker) and no key is given."""
    addr, _, key = value.partition("/")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or (need_key and not key):
        form = "HOST:PORT/KEY (a TVM RPC tracker and the key of its boards)" if need_key else "HOST:PORT[/KEY]"
        raise EdgedetError(f"--rpc {value}: expected {form}")
    return host, int(port), key or None


def connect(value: str):
    """An RPC session for an `--rpc` value: from the tracker when it has a key, else straight to the server."""
    return tvm_runtime.connect(*parse_rpc(value, need_key=False))


def builder(target: TvmTarget, sandbox: Sandbox):
    """A MetaSchedule builder compiling candidates one by one in `sandbox`'s child process, each
    within BUILD_TIMEOUT_S (the target's cross-compiler links a board's candidates)."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

    import_tensor_intrinsics()  # before MetaSchedule's first tune context imports it

    @derived_object
    class SandboxBuilder(PyBuilder):
        def build(self, build_inputs):
            out = []
            for bi in build_inputs:
                try:
                    path = sandbox.call("build", tvm.ir.save_json(bi.mod), bi.target.export(), target.compiler,
                                        timeout_s=BUILD_TIMEOUT_S)
                    out.append(BuilderResult(path, None))
                except (CandidateTimeout, RuntimeError) as e:  # MetaSchedule records the error
                    out.append(BuilderResult(None, str(e)))
            return out

    return SandboxBuilder()


def _ready(result):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunnerFuture

    @derived_object
    class Ready(PyRunnerFuture):
        def __init__(self, res):
            super().__init__()
            self.res = res

        def done(self):
            return True

        def result(self):
            return self.res

    return Ready(result)


def local_runner(sandbox: Sandbox):
    """Candidates timed on this CPU, one by one, in `sandbox`'s child process, each within RUN_TIMEOUT_S."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerResult

    @derived_object
    class SandboxRunner(PyRunner):
        def run(self, runner_inputs):
            futures = []
            for ri in runner_inputs:
                try:
                    secs = sandbox.call("run", ri.artifact_path, [a.as_json() for a in ri.args_info], EVALUATOR,
                                        timeout_s=RUN_TIMEOUT_S)
                    futures.append(_ready(RunnerResult(secs, None)))
                except (CandidateTimeout, RuntimeError) as e:
                    futures.append(_ready(RunnerResult(None, str(e))))
            return futures

    return SandboxRunner()


def rpc_runner(tracker: Tracker):
    """Candidates uploaded to a board from the tracker (one session per batch) and timed there by
    the board's time evaluator; the session is asked for from this process, not a worker pool."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerResult
    from tvm.s_tir.meta_schedule.runner import rpc_runner as msr

    config = evaluator_config(EVALUATOR)
    address = str(tracker)

    @derived_object
    class InProcessRpcRunner(PyRunner):
        def run(self, runner_inputs):
            try:
                session = connect(address)
            except EdgedetError as e:
                return [_ready(RunnerResult(None, str(e))) for _ in runner_inputs]
            futures = []
            for ri in runner_inputs:
                remote = None
                try:
                    remote = os.path.basename(ri.artifact_path)
                    rt_mod = msr.default_upload_module(session, ri.artifact_path, remote)
                    kind = str(ri.device_type)  # MetaSchedule passes the target kind ("llvm")
                    dev = session.cpu(0) if kind in ("llvm", "cpu") else session.device(kind, 0)
                    args = msr.default_alloc_argument(session, dev, [a.as_json() for a in ri.args_info], 1)
                    futures.append(_ready(RunnerResult(msr.default_run_evaluator(session, rt_mod, dev, config, args),
                                                       None)))
                except Exception as e:
                    futures.append(_ready(RunnerResult(None, f"{type(e).__name__}: {str(e)[-300:]}")))
                finally:
                    if remote is not None:
                        try:
                            session.remove(remote)
                        except Exception:  # nothing was uploaded
                            pass
            return futures

    return InProcessRpcRunner()


def builder_and_runner(target: TvmTarget, rpc: str | None, sandbox: Sandbox):
    """(builder, runner, description) for tuning `target` here or on the tracker's boards; builds
    (and local runs) happen in `sandbox`, which the caller closes."""
    if not rpc:
        if target.compiler:
            raise EdgedetError(f"tuning --target {target.name} needs its board: --rpc HOST:PORT/KEY (a tracker)")
        return builder(target, sandbox), local_runner(sandbox), "local (a child process, time-limited)"
    host, port, key = parse_rpc(rpc, need_key=True)
    return builder(target, sandbox), rpc_runner(Tracker(host, port, key)), f"rpc tracker {host}:{port} key {key}"


@dataclass
class Comparison:
    """A task's default schedule vs its best tuning record, both timed now (ms, medians)."""

    default_rule: str
    default_ms: float | None
    tuned_ms: float | None

    @property
    def winner(self) -> str:
        if self.tuned_ms is None:
            return "default"
        if self.default_ms is None:
            return "tuned"
        return "tuned" if self.tuned_ms < self.default_ms else "default"


def _build_ready(builder_, mod, target):
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    built = builder_.build([BuilderInput(mod, target)])[0]
    return None if built.error_msg else built.artifact_path


def time_default_vs_tuned(task, db, target: TvmTarget, builder_, runner, rounds: int = COMPARE_ROUNDS) -> Comparison:
    """Build the task's default-scheduled function and its best record's schedule once each, then
    time them alternately `rounds` times through `runner` (one call: one RPC session); medians in ms."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    tgt = tvm.target.Target(target.target)
    workload = task.dispatched[0]
    func = workload["main"]
    scheduled, rule = schedule_function(func, tgt, target.fp32_lanes)
    if scheduled is None:
        rule = f"none ({rule})"
        scheduled = func  # what the untuned build runs: TVM's plain lowering
    sch = db.query_schedule(workload, tgt, "main")
    paths = {"default": _build_ready(builder_, tvm.IRModule({"main": scheduled}), tgt),
             "tuned": _build_ready(builder_, sch.mod, tgt) if sch is not None else None}
    args_info = ArgInfo.from_prim_func(func)
    order = [n for _ in range(rounds) for n, p in paths.items() if p is not None]
    futures = runner.run([RunnerInput(paths[n], tgt.kind.name, args_info) for n in order])  # one session
    times: dict[str, list[float]] = {"default": [], "tuned": []}
    for name, fut in zip(order, futures, strict=True):
        res = fut.result()
        if not res.error_msg:
            times[name].append(statistics.fmean(float(s) for s in res.run_secs) * 1e3)
    for path in paths.values():
        if path is not None:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    med = {n: (statistics.median(v) if v else None) for n, v in times.items()}
    return Comparison(rule, med["default"], med["tuned"])
