"""Measured profiles (nn-Meter builder style): time single-kernel ONNX models on this
machine, fit one linear predictor per kernel class (plain JSON coefficients), sample more
where the fit is worst, and report held-out error.

Each sample is featurised by the same graph → fusion path used at prediction time, so a
timed kernel and a kernel found in a real model are described identically.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgedet.errors import EdgedetError
from edgedet.profiles.calibration_nets import SpaceNet
from edgedet.profiles.context import calibrate_in_context
from edgedet.profiles.cost import features, linear_us
from edgedet.profiles.fusion import RUNTIME_FUSION, FusionRules, fuse
from edgedet.profiles.graph import build_graph
from edgedet.profiles.host_timing import Runner, machine_info
from edgedet.profiles.kernel import Kernel
from edgedet.profiles.kernel_models import _B, KernelConfig, build
from edgedet.profiles.kernel_prior import KINDS, WEIGHTS, neighbour, sample
from edgedet.profiles.layout import REORDER_CLASS, reorder_kernel
from edgedet.profiles.schema import SCHEMA_VERSION

ORT_FUSION = RUNTIME_FUSION["onnxruntime"]
TIMING_BASIS = {"tvm": "time-evaluator median"}  # else CPU time with one thread, wall p20 with more
COMPUTE_FEATURES = (
    "const",
    "flops",
    "bytes_read",
    "bytes_written",
    "out_elems",
    "in_elems",
    "spill_bytes",
    "dram_bytes",
    "far_bytes",
)
MEMORY_FEATURES = ("const", "bytes_read", "bytes_written", "flops", "spill_bytes", "dram_bytes", "far_bytes")


def l2_mib() -> float:
    """Per-core L2 size (sysfs), the amount of memory read before each kernel run."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            txt = f.read().strip().upper()
        mult = {"K": 1 / 1024, "M": 1.0}.get(txt[-1], 1 / 2**20)
        return float(txt.rstrip("KM")) * mult
    except (OSError, ValueError):
        return 2.0


FLOOR_US = 2.0  # relative errors are taken against at least this (timer and call noise)
COMPUTE_CLASSES = ("conv", "dwconv", "quadconv", "linear", "matmul")


@dataclass
class Sample:
    config: KernelConfig
    kernel: Kernel
    key: str  # predictor class key (class or class:variant)
    us: float  # measured kernel time, call overhead and layout conversions removed
    layout_share: float = 0.0  # share of the lone kernel's time spent in NCHW ↔ NCHWc reorders


def class_key(k: Kernel) -> str:
    """The predictor entry a kernel uses: conv variants by kernel size / stride (square
    kernels, equal strides only: a 1×7 is not a 1×1), else the class."""
    ks, st = tuple(k.kernel_size or ()), tuple(k.stride or (1,))
    if k.op == "conv" and ks and k.groups == 1 and len(set(ks)) == 1 and len(set(st)) == 1:
        kh, sh = ks[0], st[0]
        if kh == 1:
            return "conv:k1"
        if kh == 3:
            return "conv:k3"
        if kh == sh:
            return f"conv:k{kh}s{sh}" if kh in (2, 4) else "conv"
    if k.op == "linear" and k.input_shapes and len(k.input_shapes[0]) == 2:
        return "linear:fc"  # classifier heads: one row, weight-bound
    return k.op


def reorder_sample(op: str, shape: tuple[int, ...], us: float) -> Sample:
    """A timed NCHW ↔ NCHWc conversion (`layout.py`) as a sample of the `reorder` class."""
    n, c, h, w = shape
    cfg_ = KernelConfig(REORDER_CLASS, (("c", c), ("h", h), ("input", int(op == "ReorderInput")), ("n", n), ("w", w)))
    return Sample(cfg_, reorder_kernel(op, shape), REORDER_CLASS, max(0.05, us))


def featurise(model_bytes: bytes) -> Kernel:
    import onnx

    names = [i.name for i in onnx.load_from_string(model_bytes).graph.input]  # all are data here
    ks, unknown = fuse(build_graph(model_bytes, names), FusionRules.from_json(ORT_FUSION), 4.0)
    ks = [k for k in ks if k.op != "identity"]
    if unknown or len(ks) != 1:
        raise EdgedetError(
            f"kernel model fused into {[k.op for k in ks]} (unknown {unknown}), expected one kernel"
        )
    return ks[0]


LOG_FEATURES = (
    "const",
    "flops",
    "bytes_read",
    "bytes_written",
    "weight_bytes",
    "out_elems",
    "in_elems",
    "flops_per_out",
)


def _logx(k: Kernel) -> list[float]:
    f = features(k)
    return [1.0] + [float(np.log1p(f[n])) for n in LOG_FEATURES[1:]]


def fit_loglinear(samples: list[Sample]) -> dict:
    """Power law t = exp(Σ c_f · log(1 + feature_f)): ridge least squares in log space, so
    efficiency may drift smoothly with every size (small reductions, thin layers...)."""
    X = np.array([_logx(s.kernel) for s in samples])
    y = np.log(np.maximum([s.us for s in samples], 0.05))
    lam = 1e-2 * np.eye(X.shape[1])
    lam[0, 0] = 0.0
    theta = np.linalg.solve(X.T @ X + lam, X.T @ y)
    return {
        "log_coef": dict(zip(LOG_FEATURES, map(float, theta), strict=True)),
        "min_us": float(max(0.0, min(s.us for s in samples)) * 0.5),
        "n": len(samples),
    }


def fit_class(samples: list[Sample]) -> dict:
    """Per class, the better (by 4-fold CV relative error) of a non-negative linear model
    and a log-space power law; both plain JSON coefficients."""
    if len(samples) < 8:
        return fit_linear(samples)
    idx = list(range(len(samples)))
    random.Random(len(samples)).shuffle(idx)
    errs = {"linear": [], "loglinear": []}
    for f in range(4):
        test = set(idx[f::4])
        train = [samples[i] for i in idx if i not in test]
        for name, fn in (("linear", fit_linear), ("loglinear", fit_loglinear)):
            spec = fn(train)
            errs[name] += [
                abs(predict_us(spec, samples[i].kernel) - samples[i].us) / max(samples[i].us, FLOOR_US)
                for i in test
            ]
    best = min(errs, key=lambda n: float(np.mean(errs[n])))
    return fit_loglinear(samples) if best == "loglinear" else fit_linear(samples)


def fit_linear(samples: list[Sample]) -> dict:
    """Non-negative least squares on relative error: min Σ ((x·θ − t)/t)²."""
    from scipy.optimize import nnls

    op = samples[0].kernel.op
    names = COMPUTE_FEATURES if op in COMPUTE_CLASSES else MEMORY_FEATURES
    X = np.array([[features(s.kernel)[f] for f in names] for s in samples])
    t = np.array([s.us for s in samples])
    y = np.maximum(t, FLOOR_US)
    scale = np.maximum(X.max(axis=0), 1e-12)
    theta, _ = nnls(X / scale / y[:, None], t / y)
    coef = {f: float(t / sc) for f, t, sc in zip(names, theta, scale, strict=True) if t > 0}
    if not coef:
        coef = {"const": float(np.median(y))}
    return {"coef": coef, "min_us": float(max(0.0, min(t)) * 0.5), "n": len(samples)}


def predict_us(spec: dict, k: Kernel) -> float:
    return linear_us(spec, k)


def fit_all(samples: list[Sample], select: bool = True) -> dict[str, dict]:
    by: dict[str, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.key, []).append(s)
    fit = fit_class if select else fit_linear
    return {key: fit(ss) for key, ss in by.items() if ss}


def cv_errors(samples: list[Sample], folds: int = 4, seed: int = 0) -> list[float]:
    """Relative error of each sample when its class is fitted without its fold."""
    idx = list(range(len(samples)))
    random.Random(seed).shuffle(idx)
    err = [0.0] * len(samples)
    for f in range(folds):
        test = set(idx[f::folds])
        train = [samples[i] for i in idx if i not in test]
        model = fit_all(train, select=False)
        for i in test:
            s = samples[i]
            spec = model.get(s.key)
            err[i] = 1.0 if spec is None else abs(predict_us(spec, s.kernel) - s.us) / max(s.us, FLOOR_US)
    return err


def call_overhead_ms(runner: Runner) -> float:
    """Cost of one runtime call with (almost) no work: subtracted from kernel timings and
    added back once per inference as the profile's fixed_us."""

    b = _B()
    x = b.input([1, 8])
    m = b.model([b.op("Add", [x, b.w(8)])])
    return min(runner.time(m, min_s=0.3, min_runs=50).min_ms for _ in range(3))


def node_overhead_us(runner: Runner, n: int = 41) -> float:
    """Runtime cost of one more (tiny) node inside a model: kernel timings lose it when the
    call overhead is subtracted, so every predicted kernel gets it back."""

    def chain(k: int) -> bytes:
        b = _B()
        y = b.input([1, 8])
        for _ in range(k):
            y = b.op("Add", [y, b.w(8)])
        return b.model([y])

    t1 = min(runner.time(chain(1), min_s=0.2, min_runs=50).best_ms for _ in range(3))
    tn = min(runner.time(chain(n), min_s=0.2, min_runs=50).best_ms for _ in range(3))
    return max(0.0, (tn - t1) / (n - 1) * 1e3)


def fit_and_score(samples: list[Sample], rng: random.Random) -> tuple[dict, list[float]]:
    """Per-class predictors fitted on all samples, with each class's error on a held-out
    20% (fitted without it) recorded; returns (classes, held-out relative errors)."""
    # held-out error: fit on 80%, test on 20% (by sample), then refit on all
    order = list(range(len(samples)))
    rng.shuffle(order)
    cut = max(1, len(order) // 5)
    test, train = [samples[i] for i in order[:cut]], [samples[i] for i in order[cut:]]
    model = fit_all(train)
    rel, per_class = [], {}
    for s in test:
        if s.key in model:
            e = abs(predict_us(model[s.key], s.kernel) - s.us) / max(s.us, FLOOR_US)
            rel.append(e)
            per_class.setdefault(s.key, []).append(e)
    final = fit_all(samples)
    classes = {}
    for key, spec in final.items():
        errs = per_class.get(key, [])
        classes[key] = {
            **{k: v for k, v in spec.items() if k != "n"},
            "samples": spec["n"],
            "held_out_mape": float(np.mean(errs)) if errs else None,
        }
    return classes, rel


def refit_profile(doc: dict, seed: int = 0) -> dict:
    """Refit a measured profile from the timings it stores (no re-measuring)."""

    samples = []
    for t in doc["calibration"]["timings"]:
        c = KernelConfig(t["kind"], tuple(sorted((k, int(v)) for k, v in t["config"].items())))
        if c.kind == REORDER_CLASS:
            q = c.p()
            op = "ReorderInput" if q["input"] else "ReorderOutput"
            samples.append(reorder_sample(op, (q["n"], q["c"], q["h"], q["w"]), float(t["us"])))
            continue
        k = featurise(build(c))
        samples.append(Sample(c, k, class_key(k), float(t["us"])))
    classes, rel = fit_and_score(samples, random.Random(seed))
    out = {**doc, "predictor": {**doc["predictor"], "classes": classes}}
    out["calibration"] = {
        **doc["calibration"],
        "mape": float(np.mean(rel)) if rel else 1.0,
        "within10": float(np.mean([e <= 0.10 for e in rel])) if rel else 0.0,
        "held_out": len(rel),
    }
    return out


@dataclass
class KernelTimer:
    """Times kernel configurations once each on `runner` and collects their samples: the
    kernel's µs net of the per-call cost and of its own layout conversions, which become
    samples of their own."""

    runner: Runner
    call_ms: float
    quick: bool
    flush_mib: float = 0.0  # sweeping L2 before each run over-priced small CNNs (see docs/latency.md)

    def __post_init__(self) -> None:
        self.samples: list[Sample] = []
        self.seen: set[KernelConfig] = set()

    def measure(self, c: KernelConfig) -> None:
        if c in self.seen:
            return
        self.seen.add(c)
        try:
            mb = build(c)
            k = featurise(mb)
            t = self.runner.time(mb, min_s=0.04 if self.quick else 0.15, min_runs=5 if self.quick else 10,
                                 flush_mib=self.flush_mib).best_ms
            reorders, share = self.runner.layout_nodes(mb)
        except EdgedetError:
            raise
        except Exception:  # a configuration the runtime rejects is skipped, not fatal
            return
        us = max(0.05, (t - self.call_ms) * 1e3 * (1.0 - share))
        self.samples.append(Sample(c, k, class_key(k), us, share))
        for op, shape, reorder_us in reorders:
            self.samples.append(reorder_sample(op, shape, reorder_us))


def sample_prior(timer: KernelTimer, kinds: list[str], per_kind: int, rng: random.Random,
                 until: Callable[[], bool], progress: bool) -> None:
    """Every kind `per_kind` times, then weighted draws from the prior until `until()`."""
    for k in kinds:
        for _ in range(per_kind):
            timer.measure(sample(k, rng))
    weights = [WEIGHTS.get(k, 1) for k in kinds]
    while not until():
        before = len(timer.samples)
        timer.measure(sample(rng.choices(kinds, weights)[0], rng))
        if progress and len(timer.samples) != before and len(timer.samples) % 50 == 0:
            print(f"  prior sampling: {len(timer.samples)} kernels timed", flush=True)


def sample_adaptive(timer: KernelTimer, rng: random.Random, until: Callable[[], bool], progress: bool,
                    max_rounds: int = 6) -> None:
    """Rounds of neighbours of the worst-predicted tenth (cross-validated) until `until()`."""
    for rounds in range(1, max_rounds + 1):
        if until():
            return
        err = cv_errors(timer.samples, seed=rounds)
        worst = sorted(range(len(timer.samples)), key=lambda i: -err[i])[: max(5, len(timer.samples) // 10)]
        for i in worst:
            if until():
                break
            if err[i] > 0.10 and timer.samples[i].config.kind != REORDER_CLASS:
                timer.measure(neighbour(timer.samples[i].config, rng))
        if progress:
            print(f"  adaptive round {rounds}: {len(timer.samples)} kernels, worst CV error "
                  f"{100 * max(err):.0f}%", flush=True)


def build_measured_profile(
    runtime: str,
    threads: int,
    budget_s: float,
    space_net: SpaceNet,
    quick: bool = False,
    profile_id: str | None = None,
    seed: int = 0,
    progress: bool = True,
    per_kind: int = 3,
    kinds: list[str] | None = None,
    context_share: float = 0.25,
    context_networks: int = 60,
    context_fresh: bool = True,
    runner=None,
    network_timer: Callable[[bytes], float] | None = None,
) -> dict:
    """Time kernels, then whole calibration networks (`context_share` of the budget; 0 skips
    them; each in a fresh process unless `context_fresh` is False; `space_net` draws their
    search-space members), for about `budget_s` seconds, and return a measured profile document.
    `runner` (default `Runner(runtime, threads)`; a board: `bench.board_timer.TvmRunner`) times
    the kernels, `network_timer` (bytes → µs), if given, the whole networks."""
    runner = runner or Runner(runtime, threads)
    rng = random.Random(seed)
    t_start = time.perf_counter()
    kernel_s = budget_s * (1.0 - context_share)
    info_start = machine_info()
    timer = KernelTimer(runner, call_overhead_ms(runner), quick)
    node_us = node_overhead_us(runner)

    def elapsed() -> float:
        return time.perf_counter() - t_start

    sample_prior(timer, list(kinds or KINDS), per_kind, rng, lambda: elapsed() >= 0.55 * kernel_s, progress)
    sample_adaptive(timer, rng, lambda: elapsed() >= 0.85 * kernel_s, progress)
    classes, rel = fit_and_score(timer.samples, rng)
    doc = _document(runner, timer.samples, classes, rel, timer.call_ms, node_us, timer.flush_mib, quick, seed,
                    profile_id, info_start, elapsed())
    if context_share > 0:
        doc = calibrate_in_context(doc, runner, max(10.0, budget_s - elapsed()), space_net, progress,
                                   context_networks, fresh=context_fresh, timer=network_timer)
    return doc


def _document(runner: Runner, samples: list[Sample], classes: dict, rel: list[float], call_ms: float,
              node_us: float, flush: float, quick: bool, seed: int, profile_id: str | None, info_start: dict,
              elapsed_s: float) -> dict:
    runtime, threads = runner.runtime, runner.threads
    info = machine_info()
    host = socket.gethostname().split(".")[0]
    pid = profile_id or f"{host}-{runtime}-t{threads}"
    return {
        "schema_version": SCHEMA_VERSION,
        "id": pid,
        "kind": "measured",
        "description": f"Measured on {info['cpu']} ({runner.runtime} {runner.version}, {threads} thread(s)); "
        "valid for this machine and runtime only",
        "hardware": {
            "name": info["cpu"],
            **{k: v for k, v in info.items() if k != "cpu"},
            "load_average_1m_at_start": info_start.get("load_average_1m"),
            "note": "timed while other processes may have been using the CPU; medians are quoted",
        },
        "runtime": {**runner.describe(), "timing_basis": TIMING_BASIS.get(runtime)
                    or ("cpu-time" if threads == 1 else "wall-p20")},
        "element_bytes": 4,
        "fusion": RUNTIME_FUSION.get(runtime, ORT_FUSION),
        "predictor": {
            "type": "linear",
            "formula": "t_us = max(min_us, Σ coef[f]·feature[f]) or, for classes with log_coef, "
            "max(min_us, exp(Σ log_coef[f]·log(1 + feature[f]))) (log_coef.const multiplies 1); "
            "features from the fused kernel, timed alone minus the runtime's layout conversions; "
            "each kernel × context_scale[class] + kernel_overhead_us (both fitted on whole calibration "
            "networks); latency = Σ kernels + fixed_us",
            "fixed_us": call_ms * 1e3,
            "kernel_overhead_us": node_us,
            "classes": classes,
        },
        "calibration": {
            "method": "single-kernel timings (per config: median process CPU time per run with 1 thread, "
            "20th-percentile wall time with more), prior sampling over edgedet / reference-CNN "
            "shapes then adaptive sampling near the worst cross-validated configs; per-class "
            "non-negative least squares on relative error",
            "mape": float(np.mean(rel)) if rel else 1.0,
            "within10": float(np.mean([e <= 0.10 for e in rel])) if rel else 0.0,
            "held_out": len(rel),
            "samples": len(samples),
            "time_s": round(elapsed_s, 1),
            "quick": quick,
            "seed": seed,
            "note": "error on held-out single kernels (20% of samples); whole-model error: "
            "`edgedet reproduce predictor`",
            "cache_flush_mib": flush,
            "timings": [
                {"kind": s.config.kind, "config": dict(s.config.params), "class": s.key, "us": round(s.us, 3),
                 "layout_share": round(s.layout_share, 4)}
                for s in samples
            ],
        },
    }
