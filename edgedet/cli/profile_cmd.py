"""`edgedet profile`: build a measured profile of this machine or of a board over TVM RPC
(time single-kernel ONNX models, fit per-op predictors), recalibrate a shipped predicted
profile, or adapt one from a few whole-network measurements."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        runtime: str = typer.Option(
            "onnxruntime", "--runtime", help="onnxruntime | openvino | tvm (TVM: this CPU, or a board with --rpc)."
        ),
        target: str = typer.Option("host", "--target", help="--runtime tvm: compile target (host | cortex-a76)."),
        rpc: str = typer.Option(
            None, "--rpc", help="--runtime tvm: HOST:PORT of a TVM RPC server (HOST:PORT/KEY: a tracker)."
        ),
        threads: int = typer.Option(1, "--threads", min=1),
        time_budget_s: float = typer.Option(
            None,
            "--time-budget-s",
            min=10.0,
            help="Wall-clock budget for timing (default 240 quick, 1800 full).",
        ),
        quick: bool = typer.Option(False, "--quick", help="Small sample for tests / quickstart (≤ 5 min)."),
        out: Path = typer.Option(None, "--out", help="Where to write the profile JSON."),
        profile_id: str = typer.Option(
            None, "--id",
            help="Profile id (default <host>-<runtime>-t<threads>; TVM: <host|board>-tvm-<target>-t<threads>).",
        ),
        calibrate: str = typer.Option(
            None, "--calibrate", help="Instead: refit the predicted profile DEVICE on the reference data."
        ),
        seed: int = typer.Option(0, "--seed"),
        adapt: str = typer.Option(
            None,
            "--adapt",
            help="Instead: adapt the predicted profile BASE (id or path) to --runtime on this machine from "
            "--measure whole networks (few-shot).",
        ),
        measure: int = typer.Option(10, "--measure", min=3, help="With --adapt: networks to measure."),
    ) -> None:
        """Measure kernels on this machine (or, --runtime tvm --rpc, on a board) and fit a profile
        (or --calibrate a predicted one, or --adapt one from a few whole-network measurements)."""
        if calibrate is not None:
            _calibrate(calibrate, out)
            return
        if runtime not in ("onnxruntime", "openvino", "tvm"):
            raise EdgedetError(f"--runtime must be onnxruntime, openvino or tvm, got {runtime!r}")
        if rpc is not None and runtime != "tvm":
            raise EdgedetError("--rpc needs --runtime tvm")
        if out is None:
            raise EdgedetError("--out PATH is required (e.g. --out profiles/my-host.json)")
        if adapt is not None:
            _adapt(adapt, runtime, target, rpc, threads, measure, profile_id, out)
            return
        _measure(runtime, threads, time_budget_s or (240.0 if quick else 1800.0), quick, profile_id, seed, out,
                 target, rpc)


# The modes import their work when run: every verb module is imported when `edgedet` starts.
def _calibrate(device: str, out: Path | None) -> None:
    """--calibrate: refit a predicted profile on the reference data."""
    from edgedet.io.atomic import write_json_atomic
    from edgedet.profiles import PROFILE_DIR
    from edgedet.profiles.calibrate import calibrate as fit_device

    doc = fit_device(device)
    dest = out or PROFILE_DIR / f"{device}.json"
    write_json_atomic(dest, doc)
    c = doc["calibration"]
    lofo = "n/a (one family)" if c["lofo_mape"] is None else f"{100 * c['lofo_mape']:.1f}%"
    typer.echo(
        f"{device}: leave-one-family-out MAPE {lofo}, leave-one-out MAPE {100 * c['loo_mape']:.1f}%, "
        f"{100 * c['within10']:.0f}% within ±10% ({c['error_basis']}, n={c['n']}) → {dest}"
    )


def _adapt(base_id: str, runtime: str, target: str, rpc: str | None, threads: int, measure: int,
           profile_id: str | None, out: Path) -> None:
    """--adapt: few-shot adaptation of a predicted profile from whole-network measurements."""
    from edgedet.io.atomic import write_json_atomic
    from edgedet.nas.sampled_nets import random_space_net
    from edgedet.profiles import load_profile
    from edgedet.profiles.adapt import adapt_profile

    base = load_profile(base_id)
    timer = runtime_doc = None
    if runtime == "tvm":
        import tvm

        from edgedet.bench.board_timer import rpc_device, tvm_timer

        timer = tvm_timer(target, rpc, threads)
        runtime_doc = {"name": "tvm", "version": tvm.__version__, "target": target,
                       "device": rpc_device(rpc), "threads": threads,
                       "timing": "time_evaluator on the device, fresh child process per network"}
    doc = adapt_profile(base, runtime, threads, measure, random_space_net, profile_id, timer=timer,
                        runtime_doc=runtime_doc)
    write_json_atomic(out, doc)
    c = doc["calibration"]
    typer.echo(
        f"adapted profile '{doc['id']}' (from '{doc['adapted_from']['id']}', {measure} networks measured "
        f"with {runtime}, {threads} thread(s)): leave-one-out MAPE {100 * c['mape']:.1f}%, "
        f"{100 * c['within10']:.0f}% within ±10%, mean signed {100 * c['mean_signed_error']:+.1f}% → {out}"
    )


def _measure(runtime: str, threads: int, budget: float, quick: bool, profile_id: str | None, seed: int,
             out: Path, target: str = "host", rpc: str | None = None) -> None:
    """Default: time single kernels (on this machine, or over TVM on a board) and fit a
    measured profile."""
    from edgedet.io.atomic import write_json_atomic
    from edgedet.nas.sampled_nets import random_space_net
    from edgedet.profiles.measure import build_measured_profile

    runner = network_timer = None
    if runtime == "tvm":
        from edgedet.bench.board_timer import TvmRunner, tvm_timer

        runner = TvmRunner(target, rpc, threads)
        network_timer = tvm_timer(target, rpc, threads)
        if profile_id is None:
            where = "host" if rpc is None else rpc.replace(":", "-").replace("/", "-")
            profile_id = f"{where}-tvm-{target}-t{threads}"
    doc = build_measured_profile(runtime, threads, budget, random_space_net, quick=quick, profile_id=profile_id,
                                 seed=seed, runner=runner, network_timer=network_timer)
    write_json_atomic(out, doc)
    c = doc["calibration"]
    typer.echo(
        f"measured profile '{doc['id']}' ({doc['hardware']['name']}, {doc['runtime']['name']}, "
        f"{threads} thread(s)): held-out kernel MAPE {100 * c['mape']:.1f}%, "
        f"{100 * c['within10']:.0f}% within ±10% → {out}"
    )
