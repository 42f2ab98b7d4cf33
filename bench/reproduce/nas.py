"""`edgedet reproduce nas`: does the search search? For each paper budget (Cortex-A76
300 ms, Myriad VPU 30 ms, A100 TensorRT 3 ms, at 224×224, predicted by the shipped profiles)
it trains, with one recipe and the same seeds,
  - the net of each strategy (`supernet`: the time-boxed ProxylessNAS search; `zero-cost`:
    regularised evolution scored by a training-free proxy),
  - ≥ 10 uniform-random nets of the searched skeleton from the band [0.85·B, B],
  - the uniform QuadraNet (one block everywhere, any skeleton of the family) closest under B,
and reports accuracy mean ± std, the searched net's rank among the random ones, and a
Pareto plot (accuracy vs predicted latency). On the first budget it also measures how each
zero-cost proxy ranks ≥ 30 in-band archs against their short-trained accuracy.
"""

from __future__ import annotations

# The CLI imports this module when `edgedet` starts (its constants are option defaults), so the
# experiment's own imports stay inside its functions.
import random
import statistics
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
BUDGETS = (("cortex-a76", 300.0), ("myriad-vpu", 30.0), ("a100-trt", 3.0))


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else 0.0


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall τ-b."""
    conc = disc = ta = tb = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ta += 1
            elif db == 0:
                tb += 1
            elif da * db > 0:
                conc += 1
            else:
                disc += 1
    den = ((conc + disc + ta) * (conc + disc + tb)) ** 0.5
    return (conc - disc) / den if den else 0.0


def uniform_under_budget(budget: float, cache, source, input_size: int = 224):
    """(space, indices, latency) of the dearest one-block-everywhere net of the skeleton family
    that fits the budget (LUT sum)."""
    from edgedet.nas.lut import build_lut
    from edgedet.nas.space import SKELETONS, skeleton

    best = None
    for name in SKELETONS:
        sp = skeleton(name, input_size=input_size, num_classes=1000)
        lut = build_lut(sp, cache, source)
        for c in range(len(sp.block_choices())):
            lat = lut.latency([c] * len(lut.table))
            if lat <= budget and (best is None or lat > best[2]):
                best = (sp, [c] * len(lut.table), lat)
    return best


def _train(space, indices, data, seeds: int, epochs: int) -> dict[str, Any]:
    import torch

    from edgedet.nas.driver import build_space_net
    from edgedet.nas.proxy import ProxyTrainConfig, train_proxy

    accs = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = build_space_net(space, space.arch_from_indices(indices), data.num_classes)
        accs.append(train_proxy(net, data.train, data.val, ProxyTrainConfig(epochs=epochs, seed=seed,
                                                                            batch_size=32)))
    return {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "values": accs}


def _row(device, budget, method, space, indices, lut_ms, acc, **extra) -> dict[str, Any]:
    arch = space.arch_from_indices(indices)
    return {"device": device, "budget_ms": budget, "method": method, "skeleton": space.name,
            "predicted_latency_ms": lut_ms, "accuracy": acc,
            "layers": [["skip" if l is None else f"k{l.kernel}e{l.expansion}" for l in s.layers]
                       for s in arch.stages], **extra}


def rank_zero_cost(space, lut, budget, data, n: int, epochs: int, proxy_width: int,
                   log=print) -> dict[str, Any]:
    """Spearman / Kendall τ of each zero-cost proxy against short-trained accuracy of n in-band archs."""
    import torch

    from edgedet.nas.driver import build_space_net
    from edgedet.nas.evolution import sample_in_band
    from edgedet.nas.search import proxy_batch, proxy_space
    from edgedet.nas.zerocost import PROXIES, score

    archs = sample_in_band(lut, budget, n, random.Random(7))
    tsp = proxy_space(space, proxy_width)
    idx = torch.arange(64)
    batches = [proxy_batch(data.train, idx[i::2], torch.device("cpu")) for i in range(2)]
    scores = {p: [] for p in PROXIES}
    accs = []
    for k, a in enumerate(archs):
        for p in PROXIES:
            torch.manual_seed(0)
            scores[p].append(score(p, build_space_net(tsp, tsp.arch_from_indices(a), data.num_classes), batches))
        accs.append(_train(space, a, data, 1, epochs)["mean"])
        log(f"  rank study {k + 1}/{n}: acc {accs[-1]:.3f}")
    return {"archs": n, "train_epochs": epochs, "accuracy": accs, "scores": scores,
            "spearman": {p: spearman(scores[p], accs) for p in PROXIES},
            "kendall": {p: kendall(scores[p], accs) for p in PROXIES}}


def run_suite(out: Path, quick: bool, seeds: int, n_random: int, train_size: int, threads: int,
              log=print, budgets=BUDGETS, on_row=None, train_epochs: int | None = None,
              images: int | None = None, time_box_min: float | None = None, rank_archs: int = 30,
              zero_cost_proxy: str = "naswot") -> dict[str, Any]:
    """Per budget: both searches, their nets trained, the random and uniform baselines, the
    summary (and the zero-cost ranking on the first); `on_row` sees the result so far."""
    import torch

    from edgedet.data import make_classification_data

    torch.set_num_threads(threads)
    box = time_box_min or (2.0 if quick else 15.0)
    images = images or (512 if quick else 2000)
    t_epochs = train_epochs or (2 if quick else 10)
    data = make_classification_data("synthetic", train_size, seed=0, train_size=images,
                                    val_size=max(200, images // 5))
    rows: list[dict] = []
    summary: dict[str, dict] = {}
    ranking = None
    t_all = time.time()
    for device, budget in budgets:
        searched = _search_strategies(out, device, budget, train_size, quick, zero_cost_proxy, box, log)
        sup = searched["supernet"][0]
        space, lut = sup.space, sup.lut
        s_accs = {}
        for strategy, (res, wall) in searched.items():
            acc = s_accs[strategy] = _train(space, res.result.indices, data, seeds, t_epochs)
            rows.append(_row(device, budget, f"searched-{strategy}", space, res.result.indices,
                             res.result.latency_ms, acc, search_wall_s=wall,
                             argmax_latency_ms=res.result.argmax_latency_ms, fit_moves=len(res.result.repair)))
            log(f"  searched-{strategy}: acc {acc['mean']:.3f} ± {acc['std']:.3f}")
        rnd_accs, u_acc = _baselines(rows, device, budget, space, lut, data, seeds, t_epochs, n_random, log)
        summary[device] = _summary(budget, searched, s_accs, rnd_accs, u_acc)
        if ranking is None and rank_archs > 0:
            ranking = {"device": device, **rank_zero_cost(space, lut, budget, data, rank_archs,
                                                           max(1, t_epochs // 2),
                                                           sup.result.config.get("proxy_width", 16), log)}
        res_now = _result(rows, summary, ranking, quick, seeds, images, train_size, t_epochs, box, t_all, threads)
        if on_row is not None:
            on_row(res_now)
    res = _result(rows, summary, ranking, quick, seeds, images, train_size, t_epochs, box, t_all, threads)
    res["pareto_png"] = str(pareto_plot(res, out / "pareto.png"))
    return res


def _search_strategies(out: Path, device: str, budget: float, train_size: int, quick: bool,
                       zero_cost_proxy: str, box: float, log) -> dict[str, tuple[Any, float]]:
    """{strategy: (its search job's result, wall seconds)} for `supernet` then `zero-cost`."""
    from edgedet.nas.driver import SearchJob, run_job
    from edgedet.nas.search import SearchConfig

    searched = {}
    for strategy in ("supernet", "zero-cost"):
        t0 = time.time()
        job = SearchJob(device=device, budget_ms=budget, out_dir=str(out / device / strategy),
                        train_size=train_size, plots=not quick, strategy=strategy,
                        zero_cost_proxy=zero_cost_proxy,
                        config=SearchConfig(budget_ms=budget, epochs=0, time_box_s=60.0 * box))
        res = run_job(job)
        searched[strategy] = (res, time.time() - t0)
        log(f"{device} @ {budget:g} ms: {strategy} on {res.space.name} in {time.time() - t0:.0f} s, "
            f"argmax {res.result.argmax_latency_ms:.4g} ms, {len(res.result.repair)} fit moves")
    return searched


def _baselines(rows: list[dict], device: str, budget: float, space, lut, data, seeds: int, t_epochs: int,
               n_random: int, log) -> tuple[list[float], dict[str, Any] | None]:
    """Train the random in-band nets and the uniform QuadraNet, append their rows; returns the
    random nets' mean accuracies and the uniform net's accuracy (None when none fits)."""
    from edgedet.nas.driver import load_device
    from edgedet.nas.evolution import sample_in_band
    from edgedet.nas.lut import BlockCostCache

    _, cost, source = load_device(device)
    rnd_accs = []
    for idx in sample_in_band(lut, budget, n_random, random.Random(1)):
        acc = _train(space, idx, data, seeds, t_epochs)
        rnd_accs.append(acc["mean"])
        rows.append(_row(device, budget, "random-in-band", space, idx, lut.latency(idx), acc))
        log(f"  random {lut.latency(idx):.4g} ms: acc {acc['mean']:.3f}")
    uni = uniform_under_budget(budget, BlockCostCache(cost), source)
    u_acc = None
    if uni is not None:
        usp, uidx, ulat = uni
        acc = u_acc = _train(usp, uidx, data, seeds, t_epochs)
        rows.append(_row(device, budget, "uniform-quadranet", usp, uidx, ulat, acc))
        log(f"  uniform {usp.name} {ulat:.4g} ms: acc {acc['mean']:.3f}")
    return rnd_accs, u_acc


def _summary(budget: float, searched: dict[str, tuple[Any, float]], s_accs: dict[str, dict],
             rnd_accs: list[float], u_acc: dict[str, Any] | None) -> dict[str, Any]:
    """One device's summary: the searched nets' accuracy and rank among the random ones."""
    sup = searched["supernet"][0]
    s_acc = s_accs["supernet"]["mean"]
    return {
        "searched_acc": s_acc,
        "random_median_acc": statistics.median(rnd_accs),
        "searched_rank_pct": 100.0 * sum(a < s_acc for a in rnd_accs) / len(rnd_accs),
        "argmax_in_band": bool(0.85 * budget <= sup.result.argmax_latency_ms <= budget),
        "fit_moves": len(sup.result.repair),
        "search_wall_s": searched["supernet"][1],
        "uniform_acc": u_acc["mean"] if u_acc else None,
        "zero_cost_acc": s_accs["zero-cost"]["mean"],
        "zero_cost_rank_pct": 100.0 * sum(a < s_accs["zero-cost"]["mean"] for a in rnd_accs) / len(rnd_accs),
    }


def _result(rows, summary, ranking, quick, seeds, images, train_size, t_epochs, box, t_all,
            threads) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "suite": "nas", "quick": quick, "seeds": seeds,
            "proxy": {"data": "synthetic", "images": images, "train_size": train_size,
                      "train_epochs": t_epochs, "search_time_box_min": box},
            "latency_note": "predicted by the shipped device profiles at 224×224, batch 1 (not measured)",
            "wall_s": time.time() - t_all, "threads": threads, "rows": rows, "summary": summary,
            "zero_cost_ranking": ranking}


def pareto_plot(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgedet.io.atomic import atomic_output

    devices = list(res["summary"]) or sorted({r["device"] for r in res["rows"]})
    fig, axes = plt.subplots(1, max(1, len(devices)), figsize=(4.5 * max(1, len(devices)), 3.6), squeeze=False)
    marks = {"random-in-band": ("o", "0.6"), "uniform-quadranet": ("s", "tab:green"),
             "searched-supernet": ("*", "tab:red"), "searched-zero-cost": ("^", "tab:blue")}
    for ax, dev in zip(axes[0], devices, strict=False):
        for method, (m, c) in marks.items():
            pts = [(r["predicted_latency_ms"], r["accuracy"]["mean"]) for r in res["rows"]
                   if r["device"] == dev and r["method"] == method]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker=m, color=c, s=90 if m == "*" else 30, label=method,
                           zorder=3)
        b = next(r["budget_ms"] for r in res["rows"] if r["device"] == dev)
        ax.axvline(b, ls="--", color="k", lw=0.8)
        ax.axvspan(0.85 * b, b, color="0.9", zorder=0)
        ax.set_title(f"{dev} @ {b:g} ms")
        ax.set_xlabel("predicted latency (ms)")
        ax.set_ylabel("proxy accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"searched vs random in band vs uniform (synthetic {res['proxy']['train_size']}px, "
                    f"{res['proxy']['train_epochs']} epochs, {res['seeds']} seeds)", caption=res["latency_note"])
    for c in ("device", "searched acc", "random median", "rank %", "argmax in band", "fit moves", "search s"):
        t.add_column(c)
    for dev, s in res["summary"].items():
        t.add_row(dev, f"{s['searched_acc']:.3f}", f"{s['random_median_acc']:.3f}", f"{s['searched_rank_pct']:.0f}",
                  str(s["argmax_in_band"]), str(s["fit_moves"]), f"{s['search_wall_s']:.0f}")
    Console().print(t)
    zc = res.get("zero_cost_ranking")
    if zc:
        print("zero-cost proxies vs short-trained accuracy (" + zc["device"] + f", {zc['archs']} archs): "
              + ", ".join(f"{p} ρ {zc['spearman'][p]:+.2f} τ {zc['kendall'][p]:+.2f}" for p in zc["spearman"]))
