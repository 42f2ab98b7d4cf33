"""The quickstart's steps a–g. Each runs edgedet's own commands in-process (the same code and
outputs a user gets typing them) and is wrapped by `record.run_step`, so a rerun skips it."""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.cli.quickstart.budgets import INPUT_SIZE, SKELETON, binding_budget
from edgedet.cli.quickstart.record import run_step
from edgedet.cpu import vector_isa
from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.profiles import load_profile

A76 = "cortex-a76"
PREDICT_ON = ("cortex-a76", "myriad-vpu", "a100-trt")
HOST_FORMATS = ("onnx", "openvino", "tvm")
BENCH_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tvm": "tvm"}
TRAIN_IMG = 32


@dataclass
class Plan:
    """Settings of one quickstart run and the time each step may take."""

    out: Path
    threads: int
    minutes: float
    budgets_ms: dict[str, float | None] = field(default_factory=dict)  # "host", A76 → given or None (auto)

    @property
    def profile_s(self) -> int:
        return max(10, int(self.minutes * 60 * 0.08))

    @property
    def search_min(self) -> float:
        return max(0.5, round(self.minutes * 0.12, 2))

    @property
    def train_images(self) -> int:
        return max(1024, min(6000, int(self.minutes * 500))) // 32 * 32


def cli(*args: Any) -> None:
    """One edgedet command in-process; its failure is this step's failure."""
    from edgedet.cli.main import main

    if main([str(a) for a in args]) != 0:
        raise EdgedetError(f"quickstart step failed: edgedet {' '.join(map(str, args))}")


def host_profile_path(threads: int) -> Path:
    """Cache path keyed by host, runtime and vector ISA (and threads): reused by later runs."""
    import os

    isa = vector_isa().best
    root = Path(os.environ.get("EDGEDET_CACHE_DIR", Path.home() / ".cache" / "edgedet")) / "profiles"
    return root / f"{platform.node() or 'host'}-onnxruntime-{isa}-t{threads}.json"


def step_profile(p: Plan, log) -> Path:
    """a. a quick measured ONNX Runtime profile of this machine (cached), copied into the run."""
    cached, dest = host_profile_path(p.threads), p.out / "host-profile.json"
    if cached.is_file():
        log(f"profile: reusing {cached} (delete it to re-measure)")
    else:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cli("profile", "--quick", "--runtime", "onnxruntime", "--threads", p.threads,
            "--time-budget-s", p.profile_s, "--out", cached)

    def work():
        shutil.copyfile(cached, dest)

    run_step(p.out, "profile", {}, [cached], [dest], work, log)
    return dest


def step_budgets(p: Plan, host: Path, log) -> dict[str, dict[str, Any]]:
    """b (part). Budgets that bind on the skeleton for the host profile and cortex-a76."""
    path = p.out / "budgets.json"

    def work():
        doc = {}
        for key, dev in (("host", str(host)), (A76, A76)):
            b = binding_budget(load_profile(dev))
            if p.budgets_ms.get(key):
                b = {**b, "budget_ms": p.budgets_ms[key], "given": True}
            doc[key] = {**b, "device": dev}
        write_json_atomic(path, doc)

    run_step(p.out, "budgets", {"given": p.budgets_ms}, [host], [path], work, log)
    doc = json.loads(path.read_text())
    for key, b in doc.items():
        log(f"budget {key}: {b['budget_ms']:g} ms (skeleton {b['skeleton']} spans {b['min_ms']:.3g}–"
            f"{b['max_ms']:.3g} ms predicted; the budget sits at {b['position']:.0%} of that range, log scale)")
    return doc


def step_search(p: Plan, key: str, budget: dict[str, Any], log) -> Path:
    """b. `edgedet search` on the skeleton for the budget, time-boxed."""
    out = p.out / f"search-{key}"
    dev = budget["device"]
    args = ["search", "--device", dev, "--budget-ms", budget["budget_ms"], "--skeleton", SKELETON,
            "--time-box-min", p.search_min, "--threads", p.threads, "--input-size", INPUT_SIZE, "--out", out]
    inputs = [Path(dev)] if Path(dev).is_file() else []
    run_step(p.out, f"search-{key}", {"args": args}, inputs, [out / "arch.json", out / "search.json"],
             lambda: cli(*args), log)
    return out / "arch.json"


def step_train(p: Plan, key: str, arch: Path, log) -> Path:
    """c. brief training of the found net on the synthetic data (accuracy vs chance)."""
    out = p.out / f"train-{key}"
    args = ["train", f"quadranet-arch:{arch}", "--data", "synthetic", "--out", out, "--epochs", 8,
            "--warmup-epochs", 0.5, "--batch-size", 32,
            "--img-size", TRAIN_IMG, "--train-size", p.train_images, "--val-size", 500, "--threads", p.threads]
    run_step(p.out, f"train-{key}", {"args": args}, [arch], [out / "checkpoint.pt", out / "metrics.json"],
             lambda: cli(*args), log)
    return out / "checkpoint.pt"


def step_export(p: Plan, key: str, arch: Path, ckpt: Path, fmt: str, target: str, log) -> Path:
    """d. export behind the parity gate (fused edgedet ops where the runtime has them)."""
    out = p.out / f"export-{key}-{fmt}-{target}"
    args = ["export", f"quadranet-arch:{arch}", "--format", fmt, "--out", out, "--checkpoint", ckpt,
            "--input-size", INPUT_SIZE]
    if fmt == "tvm":
        args += ["--target", target]
    run_step(p.out, out.name, {"args": args}, [arch, ckpt], [out], lambda: cli(*args), log)
    return out


def step_bench(p: Plan, artifact: Path, fmt: str, log) -> Path:
    """e. bench of an artifact here: latency percentiles, throughput, peak memory."""
    js = p.out / f"bench-{artifact.name}.json"
    args = ["bench", artifact, "--runtime", BENCH_RUNTIME[fmt], "--threads", p.threads, "--warmup-s", 1,
            "--duration-s", 3, "--min-iters", 20, "--no-roofline", "--json", js]
    run_step(p.out, js.stem, {"args": args}, [artifact], [js], lambda: cli(*args), log)
    return js


def step_predict(p: Plan, key: str, arch: Path, device: str, log) -> Path:
    """f. predicted latency of a found net on a profile (the host's too, next to the measured)."""
    name = Path(device).stem if Path(device).is_file() else device
    js = p.out / f"predict-{key}-{name}.json"
    args = ["predict", "--arch", arch, "--device", device, "--input-size", INPUT_SIZE, "--json", js]
    if Path(device).is_file():
        args.append("--allow-unknown")  # a quick host profile may lack a rare kernel class; the JSON says which
    inputs = [arch] + ([Path(device)] if Path(device).is_file() else [])
    run_step(p.out, js.stem, {"args": args}, inputs, [js], lambda: cli(*args), log)
    return js
