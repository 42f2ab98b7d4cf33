"""In-context calibration of a measured profile: single kernels timed alone are not the
kernels of a running model (ONNX Runtime adds NCHWc layout reorders around a lone conv that
a chain of convs shares; caches are warm or cold differently; every node costs a dispatch).
So a measured profile also times whole *calibration* networks, and fits one scale per
kernel class plus a per-kernel overhead so that Σ kernels matches the whole-model latency.

The calibration networks are random and disjoint from every model `edgedet reproduce
predictor` evaluates on: search-space samples from other skeletons and seeds, random MBConv
networks and random plain CNNs (VGG/ResNet/SqueezeNet-like layouts, FC heads).
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edgedet.profiles.cost import FREE_CLASSES, linear_us, variant_key
from edgedet.profiles.fresh import time_fresh
from edgedet.profiles.loader import from_document
from edgedet.profiles.predict import kernels_of

CALIBRATION_SEED = 10_000  # evaluation archs use seeds 0…n; calibration starts far above


@dataclass
class ContextRow:
    """One calibration network: predicted µs per kernel class (single-kernel predictors,
    no scale, no overhead), its kernel count and its measured µs."""

    name: str
    family: str
    per_class_us: dict[str, float]
    n_kernels: int
    measured_us: float


def torch_onnx(module, size: int = 224) -> bytes:
    """ONNX bytes of `module` with its weights, batch 1 at size×size (TorchScript exporter)."""
    import warnings

    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(1, 3, size, size),), buf, dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"])
    return buf.getvalue()


def plain_cnn(r: random.Random):
    """A random plain CNN: stem (+ max-pool), stages of VGG convs, residual blocks or
    SqueezeNet fire modules, then a global-pool or a wide FC head."""
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, c: int, bottleneck: bool):
            super().__init__()
            m = c // 4 if bottleneck else c
            layers = [nn.Conv2d(c, m, 1 if bottleneck else 3, padding=0 if bottleneck else 1), nn.BatchNorm2d(m),
                      nn.ReLU(), nn.Conv2d(m, m, 3, padding=1), nn.BatchNorm2d(m), nn.ReLU()]
            if bottleneck:
                layers += [nn.Conv2d(m, c, 1), nn.BatchNorm2d(c)]
            else:
                layers = layers[:3] + [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)]
            self.body, self.act = nn.Sequential(*layers), nn.ReLU()

        def forward(self, x):
            return self.act(x + self.body(x))

    class Fire(nn.Module):
        def __init__(self, cin: int, s: int, e: int):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(cin, s, 1), nn.ReLU())
            self.e1, self.e3 = nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x):
            import torch

            y = self.squeeze(x)
            return self.act(torch.cat([self.e1(y), self.e3(y)], 1))

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, s: int, t: int):
            super().__init__()
            h = cin * t
            self.res = s == 1 and cin == cout
            self.body = nn.Sequential(
                nn.Conv2d(cin, h, 1), nn.ReLU6(), nn.Conv2d(h, h, k, s, padding=k // 2, groups=h), nn.ReLU6(),
                nn.Conv2d(h, cout, 1))

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    kind = r.choice(["vgg", "residual", "fire", "mobile"])
    if kind == "mobile":  # stride-2 stem, stride-2 depthwise downsampling, odd widths
        c = r.choice([16, 24, 32])
        layers = [nn.Conv2d(3, c, 3, 2, padding=1), nn.ReLU6()]
        for w in r.sample([16, 24, 40, 56, 80, 112, 160, 192, 320], r.choice([4, 5, 6])):
            for j in range(r.choice([1, 2, 3])):
                s = 2 if j == 0 and r.random() < 0.6 else 1
                layers.append(Inverted(c, w, r.choice([3, 5]), s, r.choice([1, 3, 6])))
                c = w
        head = [nn.Conv2d(c, 4 * c, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, 1000)]
        return nn.Sequential(*layers, *head), kind
    c = r.choice([16, 24, 32, 48, 64])
    ks, st = r.choice([(3, 2), (7, 2), (11, 4), (4, 4)])
    layers: list = [nn.Conv2d(3, c, ks, st, padding=ks // 2 if ks % 2 else 0), nn.ReLU()]
    if st == 2 or r.random() < 0.5:
        layers.append(nn.MaxPool2d(3, 2, padding=1))
    for stage in range(r.choice([3, 4])):
        w = c * 2**stage
        if stage:
            layers.append(nn.MaxPool2d(2, 2) if kind != "residual" else nn.Conv2d(w // 2, w, 3, 2, padding=1))
        cin = w // 2 if stage and kind != "residual" else w
        for _ in range(r.choice([1, 2, 3])):
            if kind == "vgg":
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
            elif kind == "residual":
                layers.append(Residual(w, r.random() < 0.4))
            else:
                layers.append(Fire(cin, max(8, w // 4), w // 2))
            cin = w
    if r.random() < 0.4:
        side = r.choice([4, 6])
        hidden = r.choice([512, 1024, 2048])
        head = [nn.AdaptiveAvgPool2d(side), nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.ReLU(),
                nn.Linear(hidden, 1000)]
    else:
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers, *head), kind


def calibration_networks(n: int, seed: int = CALIBRATION_SEED) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """(name, family, ONNX bytes maker) of `n` calibration networks, families interleaved."""
    # the NAS search space is a layer above (pyproject ignore_imports): imported only here
    from edgedet.nas.driver import build_space_net
    from edgedet.nas.space import sample_arch, skeleton

    def searchable(block: str, i: int):
        r = random.Random(seed + i)
        sk = f"c{r.choice([8, 16, 24, 32])}-d{r.choice([16, 16, 25])}"
        size = r.choice([160, 192, 224, 224])
        space = skeleton(sk, block=block, input_size=size)
        arch = sample_arch(space, r)
        family = "QuadraNet (random)" if block == "quadra" else "MBConv (random)"
        return f"{block}-{sk}-{size}-s{seed + i}", family, lambda: torch_onnx(build_space_net(space, arch, 1000), size)

    for i in range(n):
        fam = i % 4  # QuadraNet, MBConv, plain CNN ×2 (four layouts)
        if fam == 0:
            yield searchable("quadra", i)
        elif fam == 1:
            yield searchable("mbconv", i)
        else:
            r = random.Random(seed + i)
            net, kind = plain_cnn(r)
            size = r.choice([160, 192, 224])
            yield (f"cnn-{kind}-{size}-s{seed + i}", "plain CNN (random)",
                   lambda net=net, size=size: torch_onnx(net, size))


# --- the fit (pure) ---------------------------------------------------------------------------
RIDGE = 0.05  # pull of each class scale towards 1 (relative-error units)
SCALE_BOUNDS = (0.4, 2.5)
OVERHEAD_BOUNDS_US = (0.0, 30.0)


def fit_context(rows: list[ContextRow], fixed_us: float, ridge: float = RIDGE) -> tuple[dict[str, float], float]:
    """Class scales s_c and per-kernel overhead o minimising Σ_models ((F + Σ_c s_c·P_c + o·N − m) / m)²
    + ridge·Σ_c (s_c − 1)² (bounded least squares). Classes that no network uses keep scale 1."""
    from scipy.optimize import lsq_linear

    classes = sorted({c for r in rows for c, v in r.per_class_us.items() if v > 0})
    if not rows or not classes:
        return {}, 0.0
    a, b = [], []
    for r in rows:
        m = r.measured_us
        a.append([r.per_class_us.get(c, 0.0) / m for c in classes] + [r.n_kernels / m])
        b.append((m - fixed_us) / m)
    lam = math.sqrt(ridge)
    for j in range(len(classes)):
        a.append([lam if k == j else 0.0 for k in range(len(classes))] + [0.0])
        b.append(lam)
    lo = [SCALE_BOUNDS[0]] * len(classes) + [OVERHEAD_BOUNDS_US[0]]
    hi = [SCALE_BOUNDS[1]] * len(classes) + [OVERHEAD_BOUNDS_US[1]]
    sol = lsq_linear(np.array(a), np.array(b), bounds=(lo, hi))
    scales = {c: round(float(s), 4) for c, s in zip(classes, sol.x[:-1], strict=True)}
    return scales, float(sol.x[-1])


def predict_row(r: ContextRow, scales: dict[str, float], overhead_us: float, fixed_us: float) -> float:
    return fixed_us + sum(scales.get(c, 1.0) * v for c, v in r.per_class_us.items()) + overhead_us * r.n_kernels


def loo_errors(rows: list[ContextRow], fixed_us: float) -> list[float]:
    """Signed relative error of each calibration network predicted by a fit without it."""
    errs = []
    for i, r in enumerate(rows):
        scales, o = fit_context(rows[:i] + rows[i + 1:], fixed_us)
        errs.append((predict_row(r, scales, o, fixed_us) - r.measured_us) / r.measured_us)
    return errs


# --- measuring (I/O) -------------------------------------------------------------------------
def row_of(name: str, family: str, model_bytes: bytes, profile, measured_us: float) -> ContextRow:
    """Per-class single-kernel prediction of a network (no context scale, no overhead)."""

    classes = profile.predictor["classes"]
    kernels, unknown = kernels_of(model_bytes, profile)
    per: dict[str, float] = {}
    n = 0
    for k in kernels:
        if k.op in FREE_CLASSES:
            continue
        key = variant_key(k, classes)
        if key not in classes:
            raise ValueError(f"{name}: no predictor for kernel class {key!r}")
        per[key] = per.get(key, 0.0) + linear_us(classes[key], k)
        n += 1
    if unknown:
        raise ValueError(f"{name}: unknown ops {unknown}")
    return ContextRow(name, family, per, n, measured_us)


def calibrate_in_context(doc: dict, runner, budget_s: float, progress: bool = True,
                         max_networks: int = 60, fresh: bool = True) -> dict:
    """Time calibration networks for about `budget_s` seconds and return the document with
    `predictor.context_scale`, a refitted `kernel_overhead_us` and `calibration.context`.
    `fresh`: each network is timed in a new interpreter, as `bench` times a model (a model
    timed after many others in one process runs faster than it will for the user)."""
    import time

    plain = {**doc, "predictor": {k: v for k, v in doc["predictor"].items() if k != "context_scale"}}
    profile = from_document(plain, "<kernels-only profile>")
    fixed = float(doc["predictor"].get("fixed_us", 0.0))
    t0 = time.perf_counter()
    rows: list[ContextRow] = []
    for name, family, make in calibration_networks(max_networks):
        if time.perf_counter() - t0 > budget_s:
            break
        try:
            mb = make()
            if fresh:
                tm = time_fresh(mb, runner.runtime, runner.threads, min_s=0.25, min_runs=5, max_runs=60)
            else:
                tm = runner.time(mb, min_s=0.25, min_runs=5, max_runs=60)
            rows.append(row_of(name, family, mb, profile, tm.best_ms * 1e3))
        except Exception as e:  # a network the runtime or the graph reader rejects is skipped
            if progress:
                print(f"  context: skipped {name}: {e}", flush=True)
            continue
        if progress and len(rows) % 5 == 0:
            print(f"  context calibration: {len(rows)} networks timed, {time.perf_counter() - t0:.0f}s", flush=True)
    if len(rows) < 6:
        return doc  # too few networks to fit anything honest: keep the single-kernel predictors
    scales, overhead = fit_context(rows, fixed)
    loo = loo_errors(rows, fixed)
    node_us = float(doc["predictor"].get("kernel_overhead_us", 0.0))
    before = [(fixed + sum(r.per_class_us.values()) + r.n_kernels * node_us - r.measured_us) / r.measured_us
              for r in rows]
    out = {**doc, "predictor": {**doc["predictor"], "context_scale": scales, "kernel_overhead_us": overhead}}
    out["calibration"] = {
        **doc["calibration"],
        "context": {
            "method": "whole calibration networks timed "
            + ("each in a fresh process (as bench times a model), " if fresh else "in the profiling process, ")
            + "same runtime, threads and timing basis as the kernels; per-class scale and per-kernel "
            "overhead by bounded least squares on relative error, ridge towards scale 1",
            "timing": "fresh-process" if fresh else "in-process",
            "networks": [{"name": r.name, "family": r.family, "measured_ms": round(r.measured_us / 1e3, 4),
                          "kernels": r.n_kernels, "loo_error": round(e, 4)} for r, e in zip(rows, loo, strict=True)],
            "loo_mape": float(np.mean(np.abs(loo))),
            "loo_within10": float(np.mean([abs(e) <= 0.10 for e in loo])),
            "loo_mean_signed_error": float(np.mean(loo)),
            "mape_kernels_only": float(np.mean(np.abs(before))),
            "time_s": round(time.perf_counter() - t0, 1),
        },
    }
    return out
