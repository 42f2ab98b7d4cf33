"""`edgedet search`: hardware-aware NAS for a latency budget on a device (ProxylessNAS over
QuadraBlocks); writes arch.json, search.json and plots to --out."""

from __future__ import annotations

from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        device: str = typer.Option(..., "--device",
                                   help="Device profile id (e.g. cortex-a76) or profile JSON path."),
        budget_ms: float = typer.Option(..., "--budget-ms",
                                        help="Latency budget in ms at --input-size, batch 1."),
        data: str = typer.Option("synthetic", "--data", help="'synthetic' or a folder of class sub-folders."),
        train_size: int = typer.Option(32, "--train-size", min=32, help="Proxy training image size."),
        input_size: int = typer.Option(224, "--input-size", min=32,
                                        help="Deployment image size (prices the LUT)."),
        epochs: int = typer.Option(0, "--epochs", min=0, help="Total epochs, warm-up included (0: as many "
                                   "as --time-box-min holds, from step times measured at the start)."),
        warmup_epochs: int = typer.Option(-1, "--warmup-epochs", help="Weight-only epochs on random paths "
                                          "(default: half of the epochs)."),
        time_box: float = typer.Option(15.0, "--time-box-min", min=0.5, help="Wall-clock minutes for the "
                                       "whole search, LUT included, when --epochs is 0."),
        proxy_width: int = typer.Option(16, "--proxy-width", min=0, help="Base width of the supernet trained "
                                        "on the proxy (0: the skeleton's own); the LUT prices real widths."),
        out: str = typer.Option("search-out", "--out", help="Output folder."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue from --out/search.ckpt."),
        loss: str = typer.Option("abs", "--loss", help="abs (TuNAS): CE + λ|lat/(0.925·T) − 1|, lat the "
                                 "argmax net's latency with the gradient of E(lat), lands on the budget; "
                                 "mul: a·CE·(log E/log T)^β; add: CE + λ(E−T)/T (ProxylessNAS)."),
        skeleton: str = typer.Option("auto", "--skeleton", help="auto (chosen from budget and device) or "
                                     "c<C>-d<16|25|36|48>, e.g. c32-d16."),
        images: int = typer.Option(0, "--synthetic-images", min=0, help="Synthetic training images (0: 2000 "
                                   "on light skeletons, proportionally fewer on heavy ones, ≥ 512)."),
        batch_size: int = typer.Option(32, "--batch-size", min=2, help="Per-process batch size."),
        arch_lr: float = typer.Option(3e-2, "--arch-lr", help="Adam learning rate of α (DESIGN "
                                      "reference 1e-3 "
                                      "is for ~10⁵ α steps; scaled up for a proxy search)."),
        threads: int = typer.Option(1, "--threads", help="torch threads per process (0: leave as is). 1 by "
                                    "default: the proxy's small convolutions ran 6.5× faster per step on "
                                    "1 thread than on 2 on the shared 2-core machine; use torchrun for "
                                    "both cores."),
        plots: bool = typer.Option(True, "--plots/--no-plots"),
        strategy: str = typer.Option("supernet", "--strategy", help="supernet (ProxylessNAS-style, trained "
                                     "in the time box) or zero-cost (regularised evolution in the latency "
                                     "band scored by --zero-cost-proxy, ≤ 3 min, no training)."),
        zc_proxy: str = typer.Option("naswot", "--zero-cost-proxy", help="naswot, synflow or zico."),
    ) -> None:
        """Search the QuadraNet space for the most accurate network within --budget-ms on --device."""
        import torch

        from edgedet.distributed import dist_setup
        from edgedet.nas.driver import SearchJob, run_job
        from edgedet.nas.search import SearchConfig

        if threads > 0:
            torch.set_num_threads(threads)
        rank, world = dist_setup()
        warm = epochs // 2 if warmup_epochs < 0 else warmup_epochs
        cfg = SearchConfig(budget_ms=budget_ms, epochs=epochs, warmup_epochs=warm, batch_size=batch_size,
                           loss=loss, seed=seed, arch_lr=arch_lr, time_box_s=60.0 * time_box,
                           proxy_width=proxy_width)
        job = SearchJob(device=device, budget_ms=budget_ms, out_dir=out, data=data, train_size=train_size,
                        input_size=input_size, skeleton=skeleton, synthetic_images=images, resume=resume,
                        plots=plots, config=cfg, strategy=strategy, zero_cost_proxy=zc_proxy)
        if strategy not in ("supernet", "zero-cost"):
            from edgedet.errors import EdgedetError

            raise EdgedetError(f"unknown strategy {strategy!r}; choose supernet or zero-cost")
        reporter = RichReporter() if rank == 0 else None
        try:
            res = run_job(job, reporter, on_plan=reporter.plan if reporter else None)
        finally:
            if world > 1:
                import torch.distributed as dist

                dist.destroy_process_group()
        if rank == 0:
            _summary(res, out, world, plots)


class RichReporter:
    """Progress bar with expected latency, accuracy and α entropy, plus a line per epoch."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.progress = None

    def plan(self, space, lut) -> None:
        src = lut.source
        cal = src.get("calibration") or {}
        err = f"MAPE {cal['mape']:.1%}" if isinstance(cal.get("mape"), (int, float)) else "calibration n/a"
        self.console.print(
            f"skeleton {space.name} (widths {list(space.widths)}, ≤{list(space.max_layers)} layers): "
            f"predicted {lut.min_ms:.3g}–{lut.max_ms:.3g} ms at {space.input_size}px by profile "
            f"{src.get('id')} ({src.get('kind')}, {err})", markup=False, highlight=False)

    def estimate(self, plan: dict[str, Any]) -> None:
        from edgedet.nas.timebox import TimePlan, format_estimate

        self.console.print(format_estimate(TimePlan(**plan)), markup=False, highlight=False)

    def start(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}", markup=False), TimeRemainingColumn(),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("search", total=total, completed=done, status="")

    def step(self, info: dict[str, Any]) -> None:
        status = (f"ep {info['epoch'] + 1} E[lat] {info['expected_ms']:.3g} ms (predicted) "
                  f"acc {info['acc']:.2f} H(α) {info['entropy']:.3f}")
        self.progress.update(self.task, advance=1, status=status)

    def epoch(self, r: dict[str, Any]) -> None:
        val = (f"val acc (argmax) {r['val_acc_argmax']:.3f}" if r.get("val_acc_argmax") is not None
               else f"val acc (random paths) {r['val_acc_sampled']:.3f}")
        self.progress.console.print(
            f"epoch {r['epoch']} [{r['phase']}] loss {r['train_loss']:.3f} train acc {r['train_acc']:.3f} "
            f"{val} E[lat] {r['expected_latency_ms']:.3g} ms "
            f"argmax {r['argmax_latency_ms']:.3g} ms H(α) {r['alpha_entropy']:.3f} "
            f"({r['wall_s']:.0f} s, {r['cpu_s']:.0f} CPU-s)",
            markup=False, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _summary(res, out: str, world: int, plots_on: bool = True) -> None:
    from rich.console import Console

    a = res.arch
    prof = a.profile or {}
    cal = prof.get("calibration") or {}
    err = f", calibration MAPE {cal['mape']:.1%}" if isinstance(cal.get("mape"), (int, float)) else ""
    layers = " | ".join(" ".join("skip" if l is None else f"k{l.kernel}e{l.expansion}" for l in s.layers)
                        for s in a.stages)
    c = Console(markup=False, highlight=False)
    c.print(f"derived architecture ({res.space.name}, {world} process(es)): {layers}")
    c.print(f"predicted latency {a.predicted_latency_ms:.4g} ms of budget {a.budget_ms:g} ms "
            f"({a.predicted_latency_ms / a.budget_ms:.0%}) on {a.device} at {a.input_size}px, batch 1 "
            f"(predicted by profile {prof.get('id')}, {prof.get('kind')}{err}); argmax before fitting "
            f"{res.result.argmax_latency_ms:.4g} ms, {len(res.result.repair)} fitting move(s)")
    plots = res.result.config.get("strategy") != "zero-cost" and plots_on
    c.print(f"wrote {out}/arch.json, search.json" + (", latency.png, accuracy.png, alpha_heatmap.png, "
                                                     "architecture.png" if plots else ""))
