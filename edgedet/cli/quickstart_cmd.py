"""`edgedet quickstart` (run by `make quickstart`): a few minutes that show what edgedet does.

The quickstart is a list of steps; each step gets the shared context, does its work and
returns the lines it adds to the final summary. Later features append their steps to STEPS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from edgedet.errors import EdgedetError

# A small QuadraNet (QuadraBlocks k=7, e=4) sized for CPU training in minutes at 32×32
# input: widths 32-64-128-256, depths 1-1-3-1.
QUICK_WIDTHS = [32, 64, 128, 256]
QUICK_DEPTHS = [1, 1, 3, 1]
QUICK_IMG = 32
QUICK_EPOCHS = 8
QUICK_LR = 1e-3
QUICK_BATCH = 32
QUICK_VAL = 1000
QUICK_MAX_TRAIN = 12_000  # 8 epochs × 12k images ≈ 3000 steps: the validated recipe


@dataclass
class QuickstartContext:
    out: Path
    minutes: float
    threads: int
    console: Any
    results: dict[str, Any] = field(default_factory=dict)  # steps share what they found here
    t_start: float = field(default_factory=time.perf_counter)

    def seconds_left(self) -> float:
        return self.minutes * 60 - (time.perf_counter() - self.t_start)


@dataclass
class Step:
    name: str
    run: Callable[[QuickstartContext], list[str]]


def _train_step(ctx: QuickstartContext) -> list[str]:
    """Train the quickstart QuadraNet on synthetic shapes for most of the time budget."""
    import torch

    from edgedet.arch import uniform_arch
    from edgedet.training.classify import train
    from edgedet.training.config import TrainConfig

    arch_path = ctx.out / "quickstart-arch.json"
    uniform_arch(QUICK_WIDTHS, QUICK_DEPTHS, kernel=7, expansion=4, input_size=QUICK_IMG,
                 num_classes=10).save(arch_path)
    model = f"quadranet-arch:{arch_path}"
    # Fit the run to the budget at this machine's measured speed: the recipe is 8 epochs
    # over 12,000 images; with less time, 8 epochs over fewer images.
    budget_s = max(30.0, 0.75 * ctx.seconds_left())  # the rest: predict, export, bench
    img_per_s = _measure_speed(model, ctx.threads)
    passes = budget_s * img_per_s / 1.15  # 15%: evaluation and drawing
    epochs = QUICK_EPOCHS
    train_size = int(min(QUICK_MAX_TRAIN, passes / epochs))
    train_size = max(QUICK_BATCH * 20, train_size) // QUICK_BATCH * QUICK_BATCH
    if train_size * epochs < QUICK_MAX_TRAIN * QUICK_EPOCHS // 2:
        ctx.console.print(f"[yellow]note:[/] this machine trains at {img_per_s:.0f} images/s; within "
                          f"{ctx.minutes:g} minutes that allows {epochs} epochs over {train_size} images, "
                          "and the accuracy will be lower than with the full recipe (try --minutes, or "
                          "fewer --threads on a busy machine)")
    ctx.console.print(f"[bold]train[/]: measured {img_per_s:.0f} training images/s on {ctx.threads} threads "
                      f"→ {epochs} epochs over {train_size} synthetic images ({QUICK_IMG}×{QUICK_IMG})")
    cfg = TrainConfig(model=model, data="synthetic", out=str(ctx.out / "train"), epochs=epochs,
                      batch_size=QUICK_BATCH, img_size=QUICK_IMG, lr=QUICK_LR, warmup_epochs=0.5,
                      train_size=train_size, val_size=QUICK_VAL, threads=ctx.threads)
    metrics = train(cfg, console=ctx.console)
    d = metrics.to_json()
    ctx.results["train"] = d
    ctx.results["model"] = model
    acc, chance = d["final_val_acc"], d["chance_acc"]
    del torch
    return [
        f"Trained a QuadraNet (widths {QUICK_WIDTHS}, depths {QUICK_DEPTHS}, QuadraConv k=7) for "
        f"{d['epochs_done']} epochs on {train_size} procedural images of {d['num_classes']} shape/texture "
        "classes "
        f"in {d['wall_time_s']:.0f} s on {d['threads']} CPU threads",
        f"  validation top-1 accuracy {100 * acc:.1f}% = {acc / chance:.1f}× chance ({100 * chance:.0f}%), "
        f"on {QUICK_VAL} held-out images",
        f"  {d['params'] / 1e6:.3f} M parameters; {d['gflops_224']:.3f} GFLOPs at 224×224 "
        f"({d['gflops']:.4f} at {QUICK_IMG}×{QUICK_IMG}; 1 MAC = 2 FLOPs)",
        f"  arch.json {arch_path}; checkpoint, metrics.json, training_curve.png in {ctx.out / 'train'}",
    ]


def _measure_speed(model: str, threads: int) -> float:
    """Training images per second of `model` (forward + backward + step, one batch)."""
    import torch
    import torch.nn.functional as F

    from edgedet import models

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = models.create(model, num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(QUICK_BATCH, 3, QUICK_IMG, QUICK_IMG).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(QUICK_BATCH, dtype=torch.long)
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    return QUICK_BATCH / times[len(times) // 2]


def _zoo_step(ctx: QuickstartContext) -> list[str]:
    """Parameters and FLOPs of the named QuadraNet family members, for scale."""
    from edgedet import models
    from edgedet.models.complexity import count_flops, count_params

    lines = ["QuadraNet family at 224×224 (1000 classes; `edgedet models` lists all with baselines):"]
    for name in ("quadranet25-xxs", "quadranet25-t", "quadranet36-b"):
        m = models.create(name)
        params, gflops = count_params(m) / 1e6, count_flops(m) / 1e9
        lines.append(f"  {name:16s} {params:6.2f} M params  {gflops:6.2f} GFLOPs")
    return lines


QUICK_PROFILES = ("cortex-a76", "myriad-vpu", "a100-trt")
DEPLOY_SIZE = 224


def _predict_step(ctx: QuickstartContext) -> list[str]:
    """Predicted latency of the trained architecture at 224×224 on shipped device profiles."""
    from edgedet import models
    from edgedet.profiles import load_profile, predict_module

    net = models.create(ctx.results["model"]).eval()
    lines = [f"Predicted latency of that network at {DEPLOY_SIZE}×{DEPLOY_SIZE}, batch 1 (no device here; "
             "predicted by shipped profiles, with their held-out calibration error):"]
    for pid in QUICK_PROFILES:
        prof = load_profile(pid)
        pred = predict_module(net, (1, 3, DEPLOY_SIZE, DEPLOY_SIZE), prof)
        mape = (prof.calibration or {}).get("mape")
        err_txt = prof.error_summary() if isinstance(mape, (int, float)) else "calibration error unknown"
        lines.append(f"  {pid:12s} {pred.latency_ms:9.3f} ms predicted ({prof.runtime.get('name', '?')}; {err_txt})")
    return lines


def _export_bench_step(ctx: QuickstartContext) -> list[str]:
    """Export the trained checkpoint to ONNX behind the parity gate, then measure it here."""
    import shutil

    from edgedet.bench.runner import BenchConfig, run_bench
    from edgedet.exporters.pipeline import ExportRequest, export_artifact

    out = ctx.out / "export-onnx"
    shutil.rmtree(out, ignore_errors=True)
    req = ExportRequest(model=ctx.results["model"], format="onnx", out=out,
                        checkpoint=ctx.out / "train" / "checkpoint.pt", input_size=DEPLOY_SIZE)
    res = export_artifact(req, log=lambda m: ctx.console.print(f"  {m}", highlight=False))
    bench = run_bench(BenchConfig(target=str(out), runtime="onnxruntime", threads=1, warmup_s=1.0,
                                  duration_s=3.0, min_iters=20, roofline=False))
    r = bench["results"][0]
    lat = r["latency_ms"]
    cpu = bench["device"].get("cpu_model", "this CPU")
    return [
        f"Exported to ONNX ({out}); parity vs PyTorch: max abs error {res.parity.max_abs_err:.2e}",
        f"  measured on {cpu}, ONNX Runtime {bench['runtime'].get('version', '')}, 1 thread, batch 1: "
        f"median {lat['median']:.2f} ms (p90 {lat['p90']:.2f}, {r['iterations']} runs), "
        f"peak memory {r['peak_memory_mib']:.0f} MiB",
    ]


# Later features append their steps.
STEPS: list[Step] = [
    Step("train", _train_step),
    Step("predict", _predict_step),
    Step("export + bench", _export_bench_step),
    Step("models", _zoo_step),
]


def run_quickstart(out: Path, minutes: float, threads: int, console: Any = None) -> list[str]:
    from rich.console import Console

    console = console or Console()
    ctx = QuickstartContext(out=out, minutes=minutes, threads=threads, console=console)
    out.mkdir(parents=True, exist_ok=True)
    summary: list[str] = []
    for step in STEPS:
        console.rule(f"quickstart: {step.name}")
        summary.extend(step.run(ctx))
    total = time.perf_counter() - ctx.t_start
    console.rule("quickstart: summary")
    for line in summary:
        console.print(line, highlight=False)
    console.print(f"quickstart finished in {total:.0f} s; everything it wrote is in {out}", highlight=False)
    return summary


def register(app: typer.Typer) -> None:
    @app.command("quickstart")
    def quickstart(
        out: Path = typer.Option(Path("runs/quickstart"), "--out",
                                 help="Folder for everything the quickstart writes."),
        minutes: float = typer.Option(6.0, "--minutes", help="Time budget (minutes)."),
        threads: int = typer.Option(2, "--threads", help="torch threads."),
    ) -> None:
        """Train a small QuadraNet on synthetic shapes for a few minutes and summarise what edgedet does."""
        if not minutes > 0:
            raise EdgedetError(f"--minutes must be positive, got {minutes}")
        if threads <= 0:
            raise EdgedetError(f"--threads must be a positive integer, got {threads}")
        if out.exists() and not out.is_dir():
            raise EdgedetError(f"--out {out} exists and is not a folder")
        run_quickstart(out, minutes, threads)
