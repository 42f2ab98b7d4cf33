"""`edgedet profile`: build a measured profile of this machine (time single-kernel ONNX
models, fit per-op predictors), or recalibrate a shipped predicted profile."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedet.errors import EdgedetError


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        runtime: str = typer.Option("onnxruntime", "--runtime", help="onnxruntime | openvino"),
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
            None, "--id", help="Profile id (default <host>-<runtime>-t<threads>)."
        ),
        calibrate: str = typer.Option(
            None, "--calibrate", help="Instead: refit the predicted profile DEVICE on the reference data."
        ),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Measure kernels on this machine and fit a profile (or --calibrate a predicted one)."""
        from edgedet.arch import write_json_atomic

        if calibrate is not None:
            from edgedet.nas.latency.calibrate import calibrate as fit_device
            from edgedet.profiles import PROFILE_DIR

            doc = fit_device(calibrate)
            dest = out or PROFILE_DIR / f"{calibrate}.json"
            write_json_atomic(dest, doc)
            c = doc["calibration"]
            typer.echo(
                f"{calibrate}: leave-one-out MAPE {100 * c['mape']:.1f}%, "
                f"{100 * c['within10']:.0f}% within ±10% (n={c['n']}) → {dest}"
            )
            return
        if runtime not in ("onnxruntime", "openvino"):
            raise EdgedetError(f"--runtime must be onnxruntime or openvino, got {runtime!r}")
        if out is None:
            raise EdgedetError("--out PATH is required (e.g. --out profiles/my-host.json)")
        from edgedet.nas.latency.measure import build_measured_profile

        budget = time_budget_s or (240.0 if quick else 1800.0)
        doc = build_measured_profile(runtime, threads, budget, quick=quick, profile_id=profile_id, seed=seed)
        write_json_atomic(out, doc)
        c = doc["calibration"]
        typer.echo(
            f"measured profile '{doc['id']}' ({doc['hardware']['name']}, {doc['runtime']['name']}, "
            f"{threads} thread(s)): held-out kernel MAPE {100 * c['mape']:.1f}%, "
            f"{100 * c['within10']:.0f}% within ±10% → {out}"
        )
