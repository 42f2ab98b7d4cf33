"""`edgedet reproduce nas`: the QuadraNet paper's Table III in spirit, on the proxy task.

For each paper budget (Cortex-A76 300 ms, Myriad VPU 30 ms, A100 TensorRT 3 ms, all at
224×224 and predicted by the shipped profiles) it compares
  - the searched QuadraNet (this package's search),
  - a ProxylessNAS MBConv space (k∈{3,5,7} × e∈{3,6} + identity) searched the same way,
  - ≥ 5 uniform-random QuadraNet architectures of the same skeleton, rejection-sampled
    so that their predicted latency lies in the same [0.85·budget, budget] window,
on predicted latency, FLOPs and params at 224×224, and proxy accuracy after the same
from-scratch training budget (mean ± std over seeds).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import typer

SCHEMA_VERSION = 1
BUDGETS = (("cortex-a76", 300.0), ("myriad-vpu", 30.0), ("a100-trt", 3.0))


def _sample_in_window(space, lut, budget: float, n: int, seed: int, low: float = 0.85,
                      tries: int = 200_000) -> list[list[int]]:
    """Uniform-random architectures (each layer uniform) kept when low·B ≤ latency ≤ B."""
    r = random.Random(seed)
    out: list[list[int]] = []
    for _ in range(tries):
        idx = [r.randrange(len(row)) for row in lut.table]
        if low * budget <= lut.latency(idx) <= budget and idx not in out:
            out.append(idx)
            if len(out) == n:
                return out
    from edgedet.errors import EdgedetError

    raise EdgedetError(f"only {len(out)} of {n} random architectures of {space.name} fell in "
                       f"[{low:.2f}·{budget:g}, {budget:g}] ms after {tries} draws")


def _describe(net, arch, cost) -> dict[str, Any]:
    from edgedet.models.complexity import count_flops, count_params

    return {"predicted_latency_ms": float(cost(net.eval(), (1, 3, arch.input_size, arch.input_size))),
            "gflops": count_flops(net, arch.input_size) / 1e9, "params_m": count_params(net) / 1e6,
            "layers": [["skip" if l is None else f"k{l.kernel}e{l.expansion}" for l in s.layers]
                       for s in arch.stages]}


def _mean_std(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def run_suite(out: Path, quick: bool, seeds: int, n_random: int, train_size: int, threads: int,
              log=print, budgets=BUDGETS, on_row=None, search_epochs: int | None = None,
              train_epochs: int | None = None, images: int | None = None) -> dict[str, Any]:
    import torch

    from edgedet.data import make_classification_data
    from edgedet.errors import EdgedetError
    from edgedet.nas.driver import SearchJob, build_space_net, load_device, run_job
    from edgedet.nas.proxy import ProxyTrainConfig, train_proxy
    from edgedet.nas.search import SearchConfig

    torch.set_num_threads(threads)
    s_def, i_def, t_def = (3, 512, 2) if quick else (12, 2000, 10)
    s_epochs, images, t_epochs = search_epochs or s_def, images or i_def, train_epochs or t_def
    rows = []
    t_all = time.time()
    for device, budget in budgets:
        _, cost, _ = load_device(device)
        entry: dict[str, Any] = {"device": device, "budget_ms": budget, "methods": {}, "skeletons": {}}
        searched = {}
        for block in ("quadra", "mbconv"):
            t0 = time.time()
            job = SearchJob(device=device, budget_ms=budget, out_dir=str(out / device / block), block=block,
                            train_size=train_size, synthetic_images=images, plots=not quick,
                            config=SearchConfig(budget_ms=budget, epochs=s_epochs,
                                                 warmup_epochs=s_epochs // 3))
            try:
                res = run_job(job)
            except EdgedetError as e:
                if block == "quadra" or "above the largest" not in str(e):
                    raise
                # no skeleton of this space reaches the budget: search the QuadraNet's skeleton
                # with MBConvs, budget not binding (recorded)
                log(f"{device} @ {budget:g} ms: {e}; searching {searched['quadra'].space.name} with MBConvs")
                job.skeleton, job.nonbinding_ok = searched["quadra"].space.name, True
                res = run_job(job)
            searched[block] = res
            log(f"{device} @ {budget:g} ms: searched {block} on {res.space.name} "
                f"in {time.time() - t0:.0f} s, "
                f"predicted {res.arch.predicted_latency_ms:.4g} ms")
        for block, r in searched.items():
            entry["skeletons"][block] = {"name": r.space.name, "range_ms": [r.lut.min_ms, r.lut.max_ms],
                                         "budget_binds": r.lut.max_ms >= budget}
        space, lut = searched["quadra"].space, searched["quadra"].lut
        candidates = {"searched-quadranet": [(searched["quadra"].space, searched["quadra"].arch)],
                      "searched-mbconv": [(searched["mbconv"].space, searched["mbconv"].arch)],
                      "random-quadranet": [
                          (space, space.arch_from_indices(i, device=device, budget_ms=budget))
                          for i in _sample_in_window(space, lut, budget, n_random, seed=1)]}
        data = make_classification_data("synthetic", train_size, seed=0, train_size=images,
                                        val_size=max(200, images // 5))
        for method, archs in candidates.items():
            per_arch = []
            for sp, arch in archs:
                desc = _describe(build_space_net(sp, arch, 1000), arch, cost)
                accs = []
                for seed in range(seeds):
                    torch.manual_seed(seed)
                    net = build_space_net(sp, arch, data.num_classes)
                    pcfg = ProxyTrainConfig(epochs=t_epochs, seed=seed)
                    accs.append(train_proxy(net, data.train, data.val, pcfg))
                per_arch.append({**desc, "accuracy": _mean_std(accs)})
                log(f"  {method}: {desc['predicted_latency_ms']:.4g} ms, {desc['gflops']:.3g} GFLOPs, "
                    f"{desc['params_m']:.3g} M params, proxy acc {statistics.fmean(accs):.3f}")
            entry["methods"][method] = per_arch
        rnd = [a["accuracy"]["mean"] for a in entry["methods"]["random-quadranet"]]
        entry["random_median_accuracy"] = statistics.median(rnd)
        entry["searched_beats_random_median"] = (
            entry["methods"]["searched-quadranet"][0]["accuracy"]["mean"] > entry["random_median_accuracy"])
        rows.append(entry)
        if on_row is not None:
            on_row(_result(rows, quick, seeds, images, train_size, s_epochs, t_epochs, t_all, threads))
    return _result(rows, quick, seeds, images, train_size, s_epochs, t_epochs, t_all, threads)


def _result(rows, quick, seeds, images, train_size, s_epochs, t_epochs, t_all, threads) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "suite": "nas", "quick": quick, "seeds": seeds,
            "proxy": {"data": "synthetic", "images": images, "train_size": train_size,
                      "search_epochs": s_epochs, "train_epochs": t_epochs},
            "latency_note": "predicted by the shipped device profiles at 224×224, batch 1 (not measured)",
            "flops_note": "torch.utils.flop_counter at 224×224, 1000-class head, 1 MAC = 2 FLOPs",
            "wall_s": time.time() - t_all, "threads": threads, "rows": rows}


def _table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Table III in spirit: searched vs MBConv space vs random, same budget "
                    f"(proxy: synthetic {res['proxy']['train_size']}px, "
                    f"{res['proxy']['train_epochs']} epochs, "
                    f"{res['seeds']} seeds)",
              caption=res["latency_note"])
    for c in ("device @ budget", "method", "pred. latency (ms)", "GFLOPs", "params (M)",
              "proxy acc (mean ± std)"):
        t.add_column(c)
    for r in res["rows"]:
        for method, archs in r["methods"].items():
            for i, a in enumerate(archs):
                acc = a["accuracy"]
                t.add_row(f"{r['device']} @ {r['budget_ms']:g}" if method.startswith("searched-q") else "",
                          method if i == 0 else "", f"{a['predicted_latency_ms']:.4g}", f"{a['gflops']:.3g}",
                          f"{a['params_m']:.3g}", f"{acc['mean']:.3f} ± {acc['std']:.3f}")
        t.add_row("", "random median", "", "", "", f"{r['random_median_accuracy']:.3f}")
    Console().print(t)


def register(app: typer.Typer) -> None:
    @app.command("nas")
    def nas(
        json_path: str = typer.Option(None, "--json", help="Also write the results as JSON here."),
        quick: bool = typer.Option(False, "--quick", help="Tiny proxy (3 search epochs, 512 images, "
                                   "2 training "
                                   "epochs): minutes instead of hours."),
        seeds: int = typer.Option(2, "--seeds", min=1, help="Training seeds per architecture."),
        n_random: int = typer.Option(5, "--random", min=1, help="Random architectures per budget."),
        train_size: int = typer.Option(64, "--train-size", min=32, help="Proxy image size."),
        out: str = typer.Option("nas-reproduce", "--out", help="Folder for the searches' outputs."),
        threads: int = typer.Option(2, "--threads", min=1),
        search_epochs: int = typer.Option(0, "--search-epochs", min=0, help="Search epochs (12; quick 3)."),
        train_epochs: int = typer.Option(0, "--train-epochs", min=0, help="Training epochs (10; quick 2)."),
        images: int = typer.Option(0, "--images", min=0, help="Synthetic training images (2000; quick 512)."),
        devices: str = typer.Option(",".join(d for d, _ in BUDGETS), "--devices",
                                    help="Comma-separated subset of the paper budgets' devices."),
    ) -> None:
        """Searched QuadraNet vs MBConv space vs random archs at the paper's three budgets."""
        from edgedet.arch import write_json_atomic
        from edgedet.errors import EdgedetError

        wanted = [d.strip() for d in devices.split(",") if d.strip()]
        unknown = [d for d in wanted if d not in dict(BUDGETS)]
        if unknown or not wanted:
            raise EdgedetError(f"unknown --devices {', '.join(unknown) or devices!r}; "
                               f"choose from {', '.join(d for d, _ in BUDGETS)}")
        budgets = [(d, b) for d, b in BUDGETS if d in wanted]

        def partial(res: dict) -> None:  # keep what is done if a long run is stopped
            if json_path:
                write_json_atomic(json_path, res)

        res = run_suite(Path(out), quick, seeds, n_random, 32 if quick and train_size == 64 else train_size,
                        threads, budgets=budgets, on_row=partial, search_epochs=search_epochs or None,
                        train_epochs=train_epochs or None, images=images or None)
        _table(res)
        if json_path:
            write_json_atomic(json_path, res)
            print(f"wrote {json_path}")
