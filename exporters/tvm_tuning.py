"""MetaSchedule tuning of a Relax module's fused operators, cached per (task, target).

Tasks (one per distinct fused PrimFunc) are tuned heaviest first — weight = FLOP estimate ×
calls — each with up to `trials` measured candidates, until the wall-clock budget runs out.
Candidates are built in a time-limited child process (the cross-compiler for a board) and timed
there on this CPU, or by the RPC runner on the board behind a tracker (`HOST:PORT/KEY`).
Every measured record lands in the cache `$EDGEDET_TVM_CACHE` (default ~/.cache/edgedet/tvm)
`/<target>-<sha12>/`, a MetaSchedule JSON database: a task with `trials` records there is not
tuned again (another model with the same layers, or a run cut short: resumable), a task with
fewer gets only the missing trials. `export_database` writes the best record of each of this
model's tasks into the artifact, from which `compile_module` rebuilds the same library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedet.errors import EdgedetError
from edgedet.exporters import tvm_measure
from edgedet.exporters.tvm_sandbox import Sandbox
from edgedet.exporters.tvm_target import TvmTarget

TRIALS_PER_ITER = 16
POPULATION = 64  # candidates per evolutionary-search generation
DB_FILES = ("database_workload.json", "database_tuning_record.json")  # the cache's file names
ARTIFACT_FILES = ("tuning_workload.json", "tuning_records.json")  # in the artifact folder


@dataclass
class TaskResult:
    """One tuned task: its fused function, weight (calls), FLOPs, trials measured / cached, best
    record's ms at tuning time; then its default schedule and best record timed side by side
    (`default_ms`, `tuned_ms`) and which of the two the artifact ships (`winner`)."""

    name: str
    calls: int
    flops: float
    trials_run: int
    trials_cached: int
    best_ms: float | None
    seconds: float
    default_rule: str = ""
    default_ms: float | None = None
    tuned_ms: float | None = None
    winner: str = "default"


@dataclass
class TuneResult:
    tasks: list[TaskResult] = field(default_factory=list)
    skipped_for_budget: list[str] = field(default_factory=list)
    seconds: float = 0.0
    runner: str = "local"
    cache: str = ""

    def winners(self) -> set[str]:
        """Names of the tasks whose tuning record beat their default schedule."""
        return {t.name for t in self.tasks if t.winner == "tuned"}

    def to_json(self) -> dict:
        return {
            "runner": self.runner,
            "cache": self.cache,
            "seconds": round(self.seconds, 1),
            "tasks": [asdict(t) for t in self.tasks],
            "skipped_for_budget": self.skipped_for_budget,
            "winners": {"tuned": len(self.winners()), "default": len(self.tasks) - len(self.winners())},
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


def _strategy():
    """Evolutionary search sized for a small machine: MetaSchedule's default (population 512,
    4 generations) spends over a minute per task here before the first measurement."""
    from tvm.s_tir import meta_schedule as ms

    return ms.search_strategy.EvolutionarySearch(population_size=POPULATION, init_min_unmeasured=16,
                                                 genetic_num_iters=2)


def _records(db, task, k: int) -> list:
    return list(db.get_top_k(db.commit_workload(task.dispatched[0]), k))


def _tune_task(task, todo: int, builder, runner, db) -> None:
    """`todo` more trials of one task into `db`. The tune context is made here rather than by
    `extracted_tasks_to_tune_contexts`, whose per-task `logging.config.dictConfig` failed on an
    unnamed handler in a second run in one process and printed MetaSchedule's tables to stdout."""
    from tvm.s_tir import meta_schedule as ms

    ctx = ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
                         search_strategy=_strategy(), task_name=task.task_name,
                         logger=logging.getLogger("edgedet.meta_schedule"), num_threads=1)
    with tempfile.TemporaryDirectory(prefix="edgedet-ms-") as work:
        ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=work, max_trials_global=todo,
                      max_trials_per_task=todo, num_trials_per_iter=min(TRIALS_PER_ITER, todo),
                      builder=builder, runner=runner, database=db, cost_model="random",
                      measure_callbacks="default")


def tune(
    mod,
    target: TvmTarget,
    trials: int,
    budget_s: float | None = None,
    rpc: str | None = None,
    log: Callable[[str], None] = lambda s: None,
    cache: Path | None = None,
) -> tuple[object, TuneResult]:
    """Tune `mod`'s tasks into the target's cache (here, or on the boards of the tracker `rpc`
    HOST:PORT/KEY); each task's best record is then timed against its default schedule.
    Returns (cache database, result); `result.winners()` are the tasks whose record ships.
    `cache`: a record folder instead of the target's cache (a tuning run from scratch)."""
    if trials < 1:
        raise EdgedetError(f"--tune-trials must be at least 1, got {trials}")
    sandbox = Sandbox()
    try:
        return _tune_all(mod, target, trials, budget_s, rpc, log, cache, sandbox)
    finally:
        sandbox.close()


def _tune_all(mod, target: TvmTarget, trials: int, budget_s: float | None, rpc: str | None,
              log: Callable[[str], None], cache: Path | None, sandbox: Sandbox) -> tuple[object, TuneResult]:
    builder, runner, runner_name = tvm_measure.builder_and_runner(target, rpc, sandbox)
    folder = cache_dir(target) if cache is None else Path(cache)
    db = open_database(folder)
    tasks = extract(mod, target)
    res = TuneResult(runner=runner_name, cache=str(folder))
    t0 = time.perf_counter()
    log(f"tuning {len(tasks)} tasks, ≤ {trials} trials each ({runner_name}); cache {folder}")
    spent: list[float] = []
    for i, task in enumerate(tasks):
        have = len(_records(db, task, trials))
        todo = max(trials - have, 0)
        if todo > 0 and budget_s is not None and time.perf_counter() - t0 > budget_s:
            res.skipped_for_budget.append(task.task_name)
            continue
        t1 = time.perf_counter()
        if todo > 0:
            _tune_task(task, todo, builder, runner, db)
        best = _records(db, task, 1)
        best_ms = float(sum(float(s) for s in best[0].run_secs) / len(best[0].run_secs)) * 1e3 if best else None
        cmp = tvm_measure.time_default_vs_tuned(task, db, target, builder, runner) if best else None
        r = TaskResult(task.task_name, int(task.weight), _flops(task), todo, have, best_ms, 0.0)
        if cmp is not None:
            r.default_rule, r.default_ms, r.tuned_ms = cmp.default_rule, cmp.default_ms, cmp.tuned_ms
            r.winner = cmp.winner
        r.seconds = time.perf_counter() - t1
        res.tasks.append(r)
        if todo > 0:
            spent.append(r.seconds)
        left = sum(1 for t in tasks[i + 1:] if len(_records(db, t, trials)) < trials)
        eta = (sum(spent) / len(spent) * left) if spent else 0.0
        log(f"[{i + 1}/{len(tasks)}] {task.task_name}: tuned {_ms(r.tuned_ms)} vs default {_ms(r.default_ms)} "
            f"→ {r.winner} ({todo} trials, {have} cached); {time.perf_counter() - t0:.0f} s, ~{eta:.0f} s left")
    res.seconds = time.perf_counter() - t0
    n_tuned = len(res.winners())
    log(f"tuning records ship for {n_tuned} of {len(res.tasks)} tuned tasks (the others: default schedule faster)")
    if res.skipped_for_budget:
        log(f"budget of {budget_s:g} s spent: {len(res.skipped_for_budget)} tasks keep their default schedule")
    return db, res


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} ms"


def export_database(db, mod, target: TvmTarget, folder: Path, keep: Callable[[object], bool]) -> list[str]:
    """Write the best cached record of each of `mod`'s tasks that `keep(task)` accepts into
    `folder` (ARTIFACT_FILES, a MetaSchedule JSON database); returns the file names written."""
    from tvm.s_tir import meta_schedule as ms

    for name in ARTIFACT_FILES:
        (folder / name).unlink(missing_ok=True)
    out = open_database(folder, ARTIFACT_FILES)
    for task in extract(mod, target):
        best = _records(db, task, 1) if keep(task) else []
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
