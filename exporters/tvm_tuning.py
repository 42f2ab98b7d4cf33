"""MetaSchedule tuning of a Relax module's fused operators, cached per (task, target).

Tasks (one per distinct fused PrimFunc) are tuned heaviest first — weight = FLOP estimate ×
calls — each with up to `trials` measured candidates, until the wall-clock budget runs out.
Candidates are built by the local builder (the cross-compiler for a board) and timed by the
local runner on this CPU, or by the RPC runner on the board behind a tracker (`HOST:PORT/KEY`).
Every measured record lands in the cache `$EDGEDET_TVM_CACHE` (default ~/.cache/edgedet/tvm)
`/<target>-<sha12>/`, a MetaSchedule JSON database: a task with `trials` records there is not
tuned again (another model with the same layers, or a run cut short: resumable), a task with
fewer gets only the missing trials. `export_database` writes the best record of each of this
model's tasks into the artifact, from which `compile_module` rebuilds the same library.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedet.errors import EdgedetError
from edgedet.exporters.tvm_target import TvmTarget

TRIALS_PER_ITER = 16
POPULATION = 64  # candidates per evolutionary-search generation
BUILD_TIMEOUT_S = 120  # a candidate build in a fresh worker on a loaded 2-core machine
DB_FILES = ("database_workload.json", "database_tuning_record.json")  # the cache's file names
ARTIFACT_FILES = ("tuning_workload.json", "tuning_records.json")  # in the artifact folder


@dataclass
class TaskResult:
    """One tuned task: its fused function, weight (calls), FLOPs, trials measured / cached, best ms."""

    name: str
    calls: int
    flops: float
    trials_run: int
    trials_cached: int
    best_ms: float | None
    seconds: float


@dataclass
class TuneResult:
    tasks: list[TaskResult] = field(default_factory=list)
    skipped_for_budget: list[str] = field(default_factory=list)
    seconds: float = 0.0
    runner: str = "local"
    cache: str = ""

    def to_json(self) -> dict:
        return {
            "runner": self.runner,
            "cache": self.cache,
            "seconds": round(self.seconds, 1),
            "tasks": [asdict(t) for t in self.tasks],
            "skipped_for_budget": self.skipped_for_budget,
        }


def cache_dir(target: TvmTarget) -> Path:
    """The record cache of one target (its TVM target JSON, hashed)."""
    base = Path(os.environ.get("EDGEDET_TVM_CACHE", Path.home() / ".cache" / "edgedet" / "tvm"))
    key = dict(target.target)
    key.pop("num-cores", None)  # the same code runs with any thread count
    sha = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return base / f"{target.name}-{sha}"


def open_database(folder: Path, names: tuple[str, str] = DB_FILES):
    from tvm.s_tir import meta_schedule as ms

    folder.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(str(folder / names[0]), str(folder / names[1]), allow_missing=True)


def extract(mod, target: TvmTarget) -> list:
    """MetaSchedule tasks of `mod` (after the same fusion as the build), heaviest (FLOPs × calls) first."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from edgedet.exporters.tvm import fused_primfuncs

    fused = fused_primfuncs(mod, target)
    tasks = ms.relax_integration.extract_tasks(fused, tvm.target.Target(target.target))
    return sorted(tasks, key=lambda t: -_flops(t) * t.weight)


def _flops(task) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(task.dispatched[0]))
    except Exception:  # an opaque function: count it as light
        return 0.0


def _in_process():
    """A builder and runner inside this process (MetaSchedule's popen-worker pools hung on this
    2-core machine: every candidate build timed out); candidates are built and timed one by one."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner, PyRunnerFuture, RunnerResult
    from tvm.s_tir.meta_schedule.runner.local_runner import default_alloc_argument, default_run_evaluator

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            out = []
            for bi in build_inputs:
                try:
                    out.append(BuilderResult(default_export(default_build(bi.mod, bi.target, None)), None))
                except Exception as e:  # an invalid candidate: MetaSchedule records the error
                    out.append(BuilderResult(None, f"{type(e).__name__}: {str(e)[-300:]}"))
            return out

    @derived_object
    class Ready(PyRunnerFuture):
        def __init__(self, result):
            super().__init__()
            self.res = result

        def done(self):
            return True

        def result(self):
            return self.res

    config = EvaluatorConfig._normalized(EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20))

    @derived_object
    class InProcessRunner(PyRunner):
        def run(self, runner_inputs):
            futures = []
            for ri in runner_inputs:
                try:
                    rt_mod = tvm.runtime.load_module(ri.artifact_path)
                    dev = tvm.cpu()
                    args = default_alloc_argument(dev, [a.as_json() for a in ri.args_info], 1)
                    futures.append(Ready(RunnerResult(default_run_evaluator(rt_mod, dev, config, args), None)))
                except Exception as e:
                    futures.append(Ready(RunnerResult(None, f"{type(e).__name__}: {str(e)[-300:]}")))
            return futures

    return InProcessBuilder(), InProcessRunner()


def _runner(rpc: str | None):
    from tvm.s_tir import meta_schedule as ms

    if not rpc:
        return None, "local (in this process)"
    host, _, rest = rpc.partition(":")
    port, _, key = rest.partition("/")
    if not key or not port.isdigit():
        raise EdgedetError(f"--rpc {rpc}: tuning over RPC needs a tracker, HOST:PORT/KEY")
    cfg = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=key, session_timeout_sec=120)
    return ms.runner.RPCRunner(rpc_config=cfg, max_workers=1), f"rpc tracker {host}:{port} key {key}"


def _builder(target: TvmTarget):
    from tvm.s_tir import meta_schedule as ms

    if not target.compiler:
        return ms.builder.LocalBuilder(max_workers=1, timeout_sec=BUILD_TIMEOUT_S)
    return ms.builder.LocalBuilder(max_workers=1, timeout_sec=BUILD_TIMEOUT_S, f_export=_cross_export(target.compiler))


def _cross_export(compiler: str):
    def export(mod) -> str:
        from tvm.support import cc

        path = os.path.join(tempfile.mkdtemp(prefix="edgedet-ms-"), "tmp.so")
        mod.export_library(path, fcompile=cc.cross_compiler(compiler))
        return path

    return export


def _strategy():
    """Evolutionary search sized for a small machine: MetaSchedule's default (population 512,
    4 generations) spends over a minute per task here before the first measurement."""
    from tvm.s_tir import meta_schedule as ms

    return ms.search_strategy.EvolutionarySearch(population_size=POPULATION, init_min_unmeasured=16,
                                                 genetic_num_iters=2)


def _records(db, task, k: int) -> list:
    return list(db.get_top_k(db.commit_workload(task.dispatched[0]), k))


def tune(
    mod,
    target: TvmTarget,
    trials: int,
    budget_s: float | None = None,
    rpc: str | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[object, TuneResult]:
    """Tune `mod`'s tasks into the target's cache; returns (cache database, result)."""
    from tvm.s_tir import meta_schedule as ms

    if trials < 1:
        raise EdgedetError(f"--tune-trials must be at least 1, got {trials}")
    folder = cache_dir(target)
    db = open_database(folder)
    runner, runner_name = _runner(rpc)
    builder = _builder(target)
    if runner is None:
        builder, runner = _in_process()
    tasks = extract(mod, target)
    res = TuneResult(runner=runner_name, cache=str(folder))
    t0 = time.perf_counter()
    log(f"tuning {len(tasks)} tasks, ≤ {trials} trials each ({runner_name}); cache {folder}")
    spent: list[float] = []
    for i, task in enumerate(tasks):
        have = len(_records(db, task, trials))
        todo = trials - have
        elapsed = time.perf_counter() - t0
        if todo > 0 and budget_s is not None and elapsed > budget_s:
            res.skipped_for_budget.append(task.task_name)
            continue
        t1 = time.perf_counter()
        if todo > 0:
            with tempfile.TemporaryDirectory(prefix="edgedet-ms-") as work:
                ctxs, _ = ms.relax_integration.extracted_tasks_to_tune_contexts(
                    [task], work, strategy=_strategy(), num_threads=1
                )
                ms.tune_tasks(tasks=ctxs, task_weights=[1.0], work_dir=work, max_trials_global=todo,
                              max_trials_per_task=todo, num_trials_per_iter=min(TRIALS_PER_ITER, todo),
                              builder=builder, runner=runner, database=db, cost_model="random",
                              measure_callbacks="default")
            spent.append(time.perf_counter() - t1)
        best = _records(db, task, 1)
        best_ms = float(sum(float(s) for s in best[0].run_secs) / len(best[0].run_secs)) * 1e3 if best else None
        res.tasks.append(TaskResult(task.task_name, int(task.weight), _flops(task), max(todo, 0), have,
                                    best_ms, time.perf_counter() - t1))
        left = sum(1 for t in tasks[i + 1:] if len(_records(db, t, trials)) < trials)
        eta = (sum(spent) / len(spent) * left) if spent else 0.0
        log(f"[{i + 1}/{len(tasks)}] {task.task_name}: best {best_ms or float('nan'):.3f} ms "
            f"({todo if todo > 0 else 0} trials, {have} cached); {time.perf_counter() - t0:.0f} s, ~{eta:.0f} s left")
    res.seconds = time.perf_counter() - t0
    if res.skipped_for_budget:
        log(f"budget of {budget_s:g} s spent: {len(res.skipped_for_budget)} tasks keep their default schedule")
    return db, res


def export_database(db, mod, target: TvmTarget, folder: Path) -> list[str]:
    """Write the best cached record of each of `mod`'s tasks into `folder` (ARTIFACT_FILES, a
    MetaSchedule JSON database); returns the file names written."""
    from tvm.s_tir import meta_schedule as ms

    for name in ARTIFACT_FILES:
        (folder / name).unlink(missing_ok=True)
    out = open_database(folder, ARTIFACT_FILES)
    for task in extract(mod, target):
        best = _records(db, task, 1)
        if best:
            r = best[0]
            wl = out.commit_workload(task.dispatched[0])
            out.commit_tuning_record(ms.database.TuningRecord(r.trace, wl, r.run_secs, r.target, r.args_info))
    return list(ARTIFACT_FILES)


def load_database(folder: Path):
    """An artifact's tuning database (to rebuild from it), or None if it has none."""
    if not all((Path(folder) / f).is_file() for f in ARTIFACT_FILES):
        return None
    return open_database(Path(folder), ARTIFACT_FILES)


def seed_cache(artifact_db, target: TvmTarget) -> int:
    """Copy an artifact's records into the target's cache (a rebuild then tunes nothing new)."""
    from tvm.s_tir import meta_schedule as ms

    cache = open_database(cache_dir(target))
    n = 0
    for r in artifact_db.get_all_tuning_records():
        wl = cache.commit_workload(r.workload.mod)
        cache.commit_tuning_record(ms.database.TuningRecord(r.trace, wl, r.run_secs, r.target, r.args_info))
        n += 1
    return n
