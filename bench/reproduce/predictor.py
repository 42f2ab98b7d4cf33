"""The experiment behind `edgedet reproduce predictor` (its command: `predictor_cmd`): how good
are the latency predictors?

(a) leave-one-family-out and leave-one-out error of every shipped predicted profile on its
    calibration data;
(b) on this machine: a measured profile's prediction vs ONNX Runtime's measured latency
    (same threads, each model timed in a fresh process; `--runtime tvm`: a TVM-measured
    profile vs each model compiled by the TVM exporter and timed by time_evaluator in a
    fresh process) on the reference CNNs (random
    weights filled in), every QuadraNet variant at 224×224, and random architectures of the
    search space, with MAPE, share within ±10% and mean signed error. Table, JSON and a
    predicted-vs-measured scatter plot (PNG);
(c) few-shot adaptation: cortex-a76 adapted to this machine from 5 / 10 / 20 measured
    networks, scored on the same models against the unadapted and the full measured profile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from edgedet import models as zoo
from edgedet.bench.board_timer import tvm_timer
from edgedet.bench.reproduce.predictor_adapt import adapted_profiles, score
from edgedet.errors import EdgedetError
from edgedet.io.atomic import atomic_output
from edgedet.models.quadranet import build_from_arch
from edgedet.nas.sampled_nets import random_space_net
from edgedet.nas.space import SearchSpace, sample_arch
from edgedet.profiles import Profile, from_document, load_profile, predict_onnx, shipped_ids
from edgedet.profiles.calibrate import data_root
from edgedet.profiles.calibration_nets import torch_onnx
from edgedet.profiles.fresh import time_fresh
from edgedet.profiles.graph import load_model
from edgedet.profiles.host_timing import Runner, Timing, machine_info
from edgedet.profiles.layout import fill_weights as fill
from edgedet.profiles.measure import build_measured_profile

SCHEMA_VERSION = 1


@dataclass
class ModelRow:
    model: str
    group: str
    predicted_ms: float
    measured_ms: float  # CPU time per run (1 thread) or wall p20: the basis profiles are fitted on
    median_ms: float
    runs: int
    error: float  # (predicted − measured) / measured
    error_median: float
    others_ms: dict[str, float] = field(default_factory=dict)  # the adaptation experiment's predictions
    basis: str = "cpu-time"  # what measured_ms is: cpu-time | wall-p20 | time-evaluator


def fill_weights(model_bytes_or_path, seed: int = 0) -> bytes:
    """A structure-only ONNX graph with random weights filled in, as bytes any runtime runs."""
    return fill(load_model(model_bytes_or_path), seed).SerializeToString()


def benchmark_models(n_archs: int, seed: int, include: str = "all") -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """(name, group, onnx bytes) of the comparison set, built lazily."""
    root = data_root()
    if include in ("all", "cnn"):
        for sub in ("latency-reference", "a100-reference"):
            for p in sorted((root / sub / "onnx").glob("*.onnx")):
                yield p.stem, f"reference CNN ({sub})", lambda p=p: fill_weights(p)
    if include in ("all", "quadranet"):
        for name in zoo.names():
            if name.startswith("quadranet") and "arch:" not in name:
                yield name, "QuadraNet", lambda name=name: torch_onnx(zoo.create(name))
    if include in ("all", "arch"):
        space = SearchSpace()
        for i in range(n_archs):
            arch = sample_arch(space, seed + i)
            yield (
                f"arch-{seed + i}",
                "search-space sample",
                lambda arch=arch: torch_onnx(build_from_arch(arch)),
            )


def loo_table() -> list[dict]:
    """(a): the held-out errors every shipped predicted profile records about itself."""
    rows = []
    for pid in shipped_ids():
        p = load_profile(pid)
        if p.kind != "predicted":
            continue
        c = p.calibration
        rows.append(
            {
                "profile": pid,
                "runtime": p.runtime_name,
                "n": c.get("n"),
                "families": len(c.get("families", [])) or None,
                "lofo_mape": c.get("lofo_mape"),
                "lofo_within10": c.get("lofo_within10"),
                "lofo_mean_signed_error": c.get("lofo_mean_signed_error"),
                "loo_mape": c.get("loo_mape", c["mape"]),
                "loo_within10": c.get("loo_within10", c["within10"]),
                "fit_mape": c.get("fit_mape"),
            }
        )
    return rows


def scatter_png(rows: list[ModelRow], path: Path, title: str) -> None:
    import matplotlib  # lazily: plotting is optional and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    groups = sorted({r.group for r in rows})
    for g in groups:
        xs = [r.measured_ms for r in rows if r.group == g]
        ys = [r.predicted_ms for r in rows if r.group == g]
        ax.scatter(xs, ys, label=g, s=22)
    lo = min(min(r.measured_ms, r.predicted_ms) for r in rows) * 0.8
    hi = max(max(r.measured_ms, r.predicted_ms) for r in rows) * 1.25
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
    ax.plot([lo, hi], [lo * 0.9, hi * 0.9], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def adaptation_table(con, rows: list[ModelRow], others: dict, full_id: str, result: dict) -> None:
    """(c): every adapted profile scored on the evaluation models beside the full measured one."""
    measured = [r.measured_ms for r in rows]
    scores = {label: score([r.others_ms[label] for r in rows], measured) for label in others}
    scores[f"full measured profile '{full_id}'"] = score([r.predicted_ms for r in rows], measured)
    t = Table(title=f"(c) few-shot adaptation of cortex-a76 to this machine, scored on the {len(rows)} "
              "evaluation models (none measured for the adaptation)")
    for c in ("profile", "within ±10%", "MAPE", "mean signed", "Spearman"):
        t.add_column(c)
    for label, sc in scores.items():
        t.add_row(label, f"{100 * sc['within10']:.0f}%", f"{100 * sc['mape']:.1f}%",
                  f"{100 * sc['mean_signed_error']:+.1f}%", f"{sc['spearman']:.3f}")
    con.print(t)
    result.setdefault("adaptation", {})["scores"] = scores


@dataclass(frozen=True)
class PredictorConfig:
    """What `reproduce predictor` evaluates (the CLI options, parsed)."""

    profile: Path | None = None  # a measured profile of this machine; None: build a quick one
    threads: int = 1
    archs: int = 10
    seed: int = 0
    include: str = "all"
    adapt_ns: tuple[int, ...] = (5, 10, 20)
    in_process: bool = False
    profile_budget_s: float = 480.0
    runtime: str = "onnxruntime"  # or "tvm": host, each model compiled and timed by time_evaluator


@dataclass
class Scores:
    """Prediction error over the evaluated models, against the fitted basis and the wall median."""

    within10: float
    within10_vs_median: float
    mape: float
    mean_signed_error: float

    @classmethod
    def of(cls, rows: list[ModelRow]) -> Scores:
        n = max(1, len(rows))
        return cls(
            within10=sum(abs(r.error) <= 0.10 for r in rows) / n,
            within10_vs_median=sum(abs(r.error_median) <= 0.10 for r in rows) / n,
            mape=sum(abs(r.error) for r in rows) / n,
            mean_signed_error=sum(r.error for r in rows) / n,
        )


def measured_profile(cfg: PredictorConfig, log: Callable[[str], None]) -> tuple[Profile, dict | None]:
    """The measured profile (b) scores: `cfg.profile`, or one built now (its document returned)."""
    doc = None
    if cfg.profile is None:
        quick = cfg.profile_budget_s <= 300
        log(f"no --profile given: building a measured profile ({'quick' if quick else 'full'} "
            f"mode, {cfg.profile_budget_s:.0f} s)…")
        doc = build_measured_profile("onnxruntime", cfg.threads, cfg.profile_budget_s, random_space_net, quick=quick)
        prof = from_document(doc, "<quick profile>")
    else:
        prof = load_profile(str(cfg.profile))
    if prof.kind != "measured":
        raise EdgedetError(f"--profile must be a measured profile of this machine, got kind {prof.kind!r}")
    if prof.runtime_name != cfg.runtime:
        raise EdgedetError(f"--profile '{prof.id}' was measured with {prof.runtime_name}, not --runtime {cfg.runtime}")
    if int(prof.runtime.get("threads", 1)) != cfg.threads:
        log(f"[yellow]note: profile was measured with {prof.runtime.get('threads')} thread(s), "
            f"timing with {cfg.threads}[/yellow]")
    return prof, doc


def model_timer(cfg: PredictorConfig, runner: Runner | None) -> Callable[[bytes], Timing]:
    """How (b) times an evaluation model: ONNX Runtime in a fresh process (or in this one), or
    TVM host — compiled by the exporter, time_evaluator's median in a fresh process."""
    if cfg.runtime == "tvm":
        us = tvm_timer("host", None, cfg.threads, duration_s=1.0)

        def timed(mb: bytes) -> Timing:
            ms = us(mb) / 1e3
            return Timing(ms, 0, ms, ms, ms, "time-evaluator")

        return timed
    if cfg.in_process:
        return lambda mb: runner.time(mb, min_s=1.0, min_runs=7, max_runs=100)
    return lambda mb: time_fresh(mb, "onnxruntime", cfg.threads, min_s=1.0, min_runs=7, max_runs=100)


def evaluate(cfg: PredictorConfig, prof: Profile, others: dict[str, Profile], runner: Runner | None,
             log: Callable[[str], None]) -> list[ModelRow]:
    """(b): every evaluation model predicted by `prof` (and `others`) and timed on this machine."""
    rows: list[ModelRow] = []
    timed = model_timer(cfg, runner)
    for name, group, make in benchmark_models(cfg.archs, cfg.seed, cfg.include):
        mb = make()
        pred = predict_onnx(mb, prof)
        tm = timed(mb)
        err = (pred.latency_ms - tm.best_ms) / tm.best_ms
        rows.append(ModelRow(
            name, group, pred.latency_ms, tm.best_ms, tm.median_ms, tm.runs, err,
            (pred.latency_ms - tm.median_ms) / tm.median_ms,
            {label: predict_onnx(mb, op).latency_ms for label, op in others.items()}, tm.basis,
        ))
        log(f"  {name:22s} predicted {pred.latency_ms:9.2f} ms   "
            f"measured {tm.basis} {tm.best_ms:9.2f} ms "
            f"median {tm.median_ms:9.2f} ms ({tm.runs} runs)   {100 * err:+6.1f}%")
    return rows


def run_measured(cfg: PredictorConfig, con: Console, png: Path) -> dict:
    """Parts (b) and (c): the JSON fields they add to the result."""
    prof, doc = measured_profile(cfg, con.print)
    result: dict = {} if doc is None else {"generated_profile": doc}
    runner = Runner("onnxruntime", cfg.threads) if cfg.runtime == "onnxruntime" else None
    described = runner.describe() if runner else {**prof.runtime, "timing": "time_evaluator, fresh process"}
    others: dict[str, Profile] = {}
    if cfg.adapt_ns and runner is not None:
        con.print(f"(c) adapting cortex-a76 to this machine from {', '.join(map(str, cfg.adapt_ns))} "
                  "measured networks…")
        others, adapt_meta = adapted_profiles(cfg.threads, cfg.adapt_ns)
        result["adaptation"] = {"setup": adapt_meta}
    info = machine_info()
    t0 = time.perf_counter()
    rows = evaluate(cfg, prof, others, runner, con.print)
    sc = Scores.of(rows)
    print_measured(con, rows, sc, prof, described, cfg.threads, info, time.perf_counter() - t0)
    if rows:
        scatter_png(rows, png, f"predicted ({prof.id}) vs measured, {described['name']} {cfg.threads} thread(s): "
                    f"{100 * sc.within10:.0f}% within ±10%")
        con.print(f"scatter plot → {png}")
    result.update({
        "profile": {"id": prof.id, "kind": prof.kind, "calibration": prof.calibration},
        "runtime": described,
        "machine": info,
        "models": [asdict(r) for r in rows],
        **asdict(sc),
    })
    if others and rows:
        adaptation_table(con, rows, others, prof.id, result)
    return result


def print_loo(con: Console, loo: list[dict]) -> None:
    t = Table(title="(a) predicted profiles: leave-one-family-out and leave-one-out error on their "
              "calibration data (fit choices nested inside each split)")
    for c in ("profile", "runtime", "n", "families", "LOFO MAPE", "LOFO ±10%", "LOFO signed",
              "LOO MAPE", "LOO ±10%", "fit MAPE"):
        t.add_column(c)

    def pct(v, digits=1, sign=""):
        return "n/a (one family)" if v is None else f"{100 * v:{sign}.{digits}f}%"

    for r in loo:
        t.add_row(r["profile"], r["runtime"], str(r["n"]), str(r["families"] or "?"), pct(r["lofo_mape"]),
                  pct(r["lofo_within10"], 0), pct(r["lofo_mean_signed_error"], 1, "+"),
                  f"{100 * r['loo_mape']:.1f}%", f"{100 * r['loo_within10']:.0f}%",
                  f"{100 * (r['fit_mape'] or 0):.1f}%")
    con.print(t)


def print_measured(con: Console, rows: list[ModelRow], sc: Scores, prof: Profile, runtime: dict, threads: int,
                   info: dict, elapsed_s: float) -> None:
    basis = rows[0].basis if rows else "cpu-time"
    tt = Table(title=f"(b) this machine: predicted (measured profile '{prof.id}') vs measured "
               f"({runtime['name']} {runtime.get('version', '')}, {threads} thread(s), batch 1)")
    for c in ("model", "group", "predicted ms", f"measured ms ({basis})", "measured ms (median)",
              f"error vs {basis}"):
        tt.add_column(c)
    for r in rows:
        tt.add_row(r.model, r.group, f"{r.predicted_ms:.2f}", f"{r.measured_ms:.2f}", f"{r.median_ms:.2f}",
                   f"{100 * r.error:+.1f}%")
    con.print(tt)
    con.print(
        f"{len(rows)} models: {100 * sc.within10:.0f}% within ±10% of the measured {basis} "
        f"({100 * sc.within10_vs_median:.0f}% of the wall-clock median), MAPE {100 * sc.mape:.1f}%, "
        f"mean signed error {100 * sc.mean_signed_error:+.1f}% "
        f"(CPU {info['cpu']}, load average {info.get('load_average_1m', float('nan')):.1f}; "
        "on a shared CPU the wall median includes other processes' time slices) "
        f"[{elapsed_s:.0f}s]"
    )


def run(cfg: PredictorConfig, con: Console, png: Path, loo_only: bool = False) -> dict:
    """The whole suite: (a) always, (b) and (c) unless `loo_only`; the JSON document."""
    torch.set_num_threads(cfg.threads)
    loo = loo_table()
    print_loo(con, loo)
    result = {"schema_version": SCHEMA_VERSION, "loo": loo}
    if not loo_only:
        result.update(run_measured(cfg, con, png))
    return result
