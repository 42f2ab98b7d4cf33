"""The TVM artifact: build the Relax library for the target (tuned, or with default schedules),
check a cross-compiled library is the right ELF, and pick how parity runs it (here, over RPC on a
board, or on a host build of the same module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgedet.exporters import tvm as tx
from edgedet.exporters import tvm_measure, tvm_tuning


def build_artifact(req, ex, form, stage: Path, log: Callable[[str], None]):
    """Build (and, when asked, tune) the TVM library of `ex` into `stage`: (files, entry file,
    the manifest's runtime block, a function running the library for the parity check)."""
    import tvm  # heavy optional stack

    target = tx.get_target(req.target, req.threads)
    log(f"building TVM Relax library for {target.name} ({target.description()})")
    database, tuning_files, tuning = _tuning(req, ex, target, stage, log)
    report = tx.build_library(ex.model, target, stage / "model.so", database=database, fused=not ex.decomposed)
    info = {
        "name": "tvm",
        "version": tvm.__version__,
        "executor": "relax.VirtualMachine",
        "entry": "main",
        "target": target.target,
        "target_name": target.name,
        "requires_cpu_flags": list(target.requires_cpu_flags),
        "library": "model.so (weights embedded as constants)",
        **report.to_json(),
        **({"tuning_run": tuning, "tuning_database": tuning_files} if tuning else {}),
    }
    unscheduled = report.schedules.unscheduled
    left = f", {len(unscheduled)} left to TVM's plain lowering: {', '.join(sorted(unscheduled))}" if unscheduled else ""
    log(f"{report.tuning}; default schedules on {len(report.schedules.applied)} functions{left}")
    if target.compiler:
        elf = tx.elf_info(stage / "model.so")
        if not (elf.get("elf") and elf.get("shared_object") and elf.get("machine") == target.elf_machine):
            raise RuntimeError(f"cross-compiled library is not an {target.elf_machine} shared object: {elf}")
        info.update(compiler=target.compiler, elf=elf)
        if req.rpc:
            session = tvm_measure.connect(req.rpc)
            info["parity_note"] = f"ran the {target.name} library on the board at {req.rpc}"

            def run(x):
                return tx.run_remote(session, stage / "model.so", x)

            return ["model.so", *tuning_files], "model.so", info, run
        log("the aarch64 library cannot run here: parity runs on a host build of the same Relax module")
        host_lib = stage / "parity-host.so"  # not listed in files: removed before commit
        tx.build_library(ex.model, tx.get_target("host"), host_lib, fused=not ex.decomposed)
        info["parity_note"] = (
            "host (x86_64) build of the same Relax module; the aarch64 library itself "
            "was checked as an ELF aarch64 shared object, not run (use --rpc on a board)"
        )

        def run_proxy(x):
            return tx.run_library(host_lib, x)

        return ["model.so", *tuning_files], "model.so", info, run_proxy

    def run_host(x):
        return tx.run_library(stage / "model.so", x)

    return ["model.so", *tuning_files], "model.so", info, run_host


def _tuning(req, ex, target, stage: Path, log: Callable[[str], None]):
    """(database for the build, artifact files, tuning summary) — MetaSchedule when asked,
    else the database of an existing artifact at `req.out` (a rebuild reuses its tuning)."""
    previous = tvm_tuning.load_database(req.out) if Path(req.out).is_dir() else None
    if req.tune_trials is None:
        if previous is None:
            return None, [], None
        log(f"reusing the tuning database of {req.out}")
        n = tvm_tuning.seed_cache(previous, target)
        db = tvm_tuning.open_database(tvm_tuning.cache_dir(target))
        files = tvm_tuning.export_database(db, tx.import_onnx(ex.model), target, stage,
                                           keep=lambda task: previous.has_workload(task.dispatched[0]))
        return tvm_tuning.load_database(stage), files, {"reused_records": n, "from": str(req.out)}
    if previous is not None:
        tvm_tuning.seed_cache(previous, target)  # resume from what the artifact already holds
    mod = tx.import_onnx(ex.model)
    db, result = tvm_tuning.tune(mod, target, req.tune_trials, req.tune_budget_s, req.rpc, log)
    winners = result.winners()
    files = tvm_tuning.export_database(db, mod, target, stage, keep=lambda task: task.task_name in winners)
    return tvm_tuning.load_database(stage), files, {"trials_per_task": req.tune_trials,
                                                    "budget_s": req.tune_budget_s, **result.to_json()}
