"""The roofline model the predicted profiles are fitted with: per-model features (FLOPs, bytes,
spills, kernel counts per op group) and the regularised least-squares fit of the inverse
efficiencies θ (and the overlap exponent p) on log latency, with its analytic Jacobian.

    T_model = Σ_j θ_j · F_j(model)

`calibrate` drives it over the reference data; `crossval` chooses the fit's options.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from edgedet.errors import EdgedetError
from edgedet.profiles.cost import spill_bytes
from edgedet.profiles.crossval import FitChoice
from edgedet.profiles.devices import DeviceSpec
from edgedet.profiles.kernel import Kernel

# op class → (compute group, overhead group); memory_scale is shared by all classes
CLASS_GROUPS = {
    "conv": ("conv", "overhead"),
    "dwconv": ("dwconv", "dw_overhead"),
    "quadconv": ("dwconv", "dw_overhead"),
    "linear": ("linear", "overhead"),
    "matmul": ("linear", "overhead"),
    "elementwise": ("vector", "vector_overhead"),
    "pool": ("vector", "vector_overhead"),
    "globalpool": ("vector", "vector_overhead"),
    "reduce": ("vector", "vector_overhead"),
    "layernorm": ("vector", "vector_overhead"),
    "gelu": ("vector", "vector_overhead"),
    "softmax": ("vector", "vector_overhead"),
    "concat": (None, "datamove"),
    "split": (None, "datamove"),
    "transpose": (None, "datamove"),
    "slice": (None, "datamove"),
    "pad": (None, "datamove"),
    "resize": (None, "datamove"),
    "reshape": (None, "datamove"),
}
UNCALIBRATED_NOTE = {
    "quadconv": "depthwise efficiency (its three depthwise convs) + vector epilogue; "
    "not in the calibration set",
    "layernorm": "vector efficiency and shared memory scale; not in the calibration set",
    "gelu": "vector efficiency and shared memory scale; not in the calibration set",
    "softmax": "vector efficiency; not in the calibration set",
    "matmul": "linear (fully connected) efficiency; not in the calibration set",
}
PARAMS = (
    "conv",
    "conv3x3",
    "dwconv",
    "linear",
    "vector",
    "memory",
    "spill",
    "overhead",
    "dw_overhead",
    "vector_overhead",
    "datamove",
    "parallel_half",
    "fixed",
)
# prior: (value, unit); compute/memory values are 1/efficiency, overheads in µs
PRIOR = {
    "conv": 2.5,
    "conv3x3": 2.5,
    "dwconv": 8.0,
    "linear": 3.0,
    "vector": 20.0,
    "memory": 2.0,
    "spill": 1.0,
    "overhead": 10.0,
    "dw_overhead": 10.0,
    "vector_overhead": 10.0,
    "parallel_half": 1000.0,
    "datamove": 10.0,
    "fixed": 1000.0,
}
PRIOR_WEIGHT = 0.05  # per-parameter weight of log(θ/θ0) against the data residuals


def is_winograd(k: Kernel) -> bool:
    """3×3 stride-1 dense conv: the shape runtimes run with Winograd / special kernels."""
    return k.op == "conv" and k.kernel_size == (3, 3) and k.stride == (1, 1) and k.groups == 1


@dataclass
class ModelFeatures:
    """Per-kernel roofline terms of one model (µs at 100% efficiency) and group indices."""

    comp: np.ndarray  # compute time at peak, per kernel
    mem: np.ndarray  # memory time at peak bandwidth, per kernel
    comp_group: np.ndarray  # index into PARAMS, or -1
    ovh_group: np.ndarray  # index into PARAMS
    out: np.ndarray  # output elements (the kernel's parallelism)
    spill: np.ndarray  # memory time of the traffic beyond the on-chip memory, at peak bandwidth


def model_features(kernels: list[Kernel], spec: DeviceSpec) -> ModelFeatures:
    hw = spec.hardware
    comp, mem, cg, og, out, spill = [], [], [], [], [], []
    onchip = float(hw.get("onchip_bytes", 0.0))
    for k in kernels:
        if k.op == "identity":
            continue
        if k.op not in CLASS_GROUPS:
            raise EdgedetError(f"calibration graph has kernel class {k.op!r} with no parameter group")
        c, o = CLASS_GROUPS[k.op]
        if k.op == "conv" and is_winograd(k):
            c = "conv3x3"
        comp.append(k.flops / (hw["peak_gflops"] * 1e3) if c else 0.0)
        mem.append((k.bytes_read + k.bytes_written) / (hw["bandwidth_gbs"] * 1e3))
        spill.append(spill_bytes(k, onchip, spec.element_bytes) / (hw["bandwidth_gbs"] * 1e3))
        cg.append(PARAMS.index(c) if c else -1)
        og.append(PARAMS.index(o))
        out.append(max(1.0, float(sum(math.prod(s) for s in k.output_shapes))))
    return ModelFeatures(*(np.array(a) for a in (comp, mem, cg, og, out, spill)))


def roofline_us(f: ModelFeatures, theta: np.ndarray, p: float) -> float:
    """Σ_k overhead + (compute^p + memory^p)^(1/p) + fixed  (p=1: sum, p→∞: max); compute
    efficiency falls as out/(out + parallel_half) when a kernel has few outputs to spread."""
    return float(roofline_stack(stack([f]), theta, p)[0])


@dataclass
class Stack:
    """Kernels of several models in one array set (`model` says whose), so a fit prices
    all models with a handful of numpy operations."""

    f: ModelFeatures
    model: np.ndarray
    n: int


def tie_map(choice: FitChoice | None) -> dict[int, int]:
    """Parameter → the parameter it shares its value with, under `choice`."""
    ties: dict[str, str] = {}
    if choice is not None and choice.tie_overheads:
        ties.update({t: "overhead" for t in TIED})
    if choice is not None and choice.tie_dw_compute:
        ties["dwconv"] = "conv"
    if choice is not None and choice.pool_compute:
        ties.update({c: "conv" for c in ("conv3x3", "dwconv", "linear", "vector")})
    return {PARAMS.index(a): PARAMS.index(b) for a, b in ties.items()}


def stack(feats: list[ModelFeatures], choice: FitChoice | None = None) -> Stack:
    names = ("comp", "mem", "comp_group", "ovh_group", "out", "spill")
    cat = [np.concatenate([getattr(f, a) for f in feats]) for a in names]
    for a, b in tie_map(choice).items():
        for col in (2, 3):
            cat[col] = np.where(cat[col] == a, b, cat[col])
    model = np.concatenate([np.full(len(f.comp), i) for i, f in enumerate(feats)])
    return Stack(ModelFeatures(*cat), model.astype(int), len(feats))


def roofline_stack(s: Stack, theta: np.ndarray, p: float) -> np.ndarray:
    """Per-model roofline latency (µs) of a stack of models."""
    f = s.f
    scale = np.where(f.comp_group >= 0, theta[np.maximum(f.comp_group, 0)], 0.0)
    c = scale * f.comp * (1.0 + theta[PARAMS.index("parallel_half")] / f.out)
    m = theta[PARAMS.index("memory")] * f.mem + theta[PARAMS.index("spill")] * f.spill
    hi, lo = np.maximum(c, m), np.minimum(c, m)
    body = hi * (1.0 + (lo / np.maximum(hi, 1e-300)) ** p) ** (1.0 / p)  # (c^p + m^p)^(1/p), no overflow
    per_kernel = theta[f.ovh_group] + body
    return np.bincount(s.model, weights=per_kernel, minlength=s.n) + theta[PARAMS.index("fixed")]


def roofline_log_jacobian(s: Stack, theta: np.ndarray, p: float, act: list[int], zp: float) -> np.ndarray:
    """∂ log T_model / ∂ z for z = (log θ_act…, logit of p): the analytic Jacobian of the
    fit's data residuals (one row per model), ~10× fewer model evaluations than finite
    differences."""
    f = s.f
    cg = np.maximum(f.comp_group, 0)
    ph = theta[PARAMS.index("parallel_half")]
    scale = np.where(f.comp_group >= 0, theta[cg], 0.0)
    c = scale * f.comp * (1.0 + ph / f.out)
    m_mem = theta[PARAMS.index("memory")] * f.mem
    m_sp = theta[PARAMS.index("spill")] * f.spill
    m = m_mem + m_sp
    hi, lo = np.maximum(c, m), np.minimum(c, m)
    r = lo / np.maximum(hi, 1e-300)
    rp = r**p
    body = hi * (1.0 + rp) ** (1.0 / p)
    safe = np.maximum(body, 1e-300)
    dc = np.where(body > 0, (c / safe) ** (p - 1.0), 0.0)
    dm = np.where(body > 0, (m / safe) ** (p - 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rlog = np.where(r > 0, rp * np.log(np.where(r > 0, r, 1.0)), 0.0)
    dbody_dp = body * (-np.log1p(rp) / p**2 + rlog / (p * (1.0 + rp)))
    total = roofline_stack(s, theta, p)
    cols = []
    for j in act:  # θ_j · ∂T/∂θ_j, per kernel, summed per model
        name = PARAMS[j]
        per = theta[j] * (f.ovh_group == j)
        per = per + dc * c * ((f.comp_group == j) & (f.comp_group >= 0))
        if name == "parallel_half":
            per = per + dc * scale * f.comp * ph / f.out
        elif name == "memory":
            per = per + dm * m_mem
        elif name == "spill":
            per = per + dm * m_sp
        col = np.bincount(s.model, weights=per, minlength=s.n)
        if name == "fixed":
            col = col + theta[j]
        cols.append(col)
    sig = float(expit(zp))
    cols.append(np.bincount(s.model, weights=dbody_dp, minlength=s.n) * 7.0 * sig * (1.0 - sig))
    return np.stack(cols, axis=1) / np.maximum(total, 1e-9)[:, None]


TIED = ("vector_overhead", "datamove")  # share `overhead` when FitChoice.tie_overheads


def fit(
    feats: list[ModelFeatures], y: np.ndarray, active: list[int], choice: FitChoice | None = None
) -> tuple[np.ndarray, float]:
    """θ ≥ 0 and the roofline exponent p ∈ [1, 8] minimising Σ log²(T(θ,p)/y) +
    w² Σ log²(θ/θ0) (a weak prior on the active parameters; w and tying per `choice`)."""
    from scipy.optimize import least_squares

    choice = choice or FitChoice(PRIOR_WEIGHT, False)
    ties = tie_map(choice)
    act = sorted({ties.get(j, j) for j in active})
    st = stack(feats, choice)
    centre = np.array([PRIOR[p] for p in PARAMS])
    zp0 = -3.0
    if choice.pooled_prior:  # shrink towards what one shared compute scale explains
        pooled = FitChoice(PRIOR_WEIGHT, True, True, pool_compute=True)
        th0, p0 = fit(feats, y, active, pooled)
        centre = np.where(th0 > 0, th0, centre)
        q = min(max((p0 - 1.0) / 7.0, 0.01), 0.99)  # p = 1 + 7·sigmoid(z)
        zp0 = float(np.log(q / (1.0 - q)))
    prior = np.log(centre[act])
    ly = np.log(y)
    w = choice.prior_weight

    def unpack(z: np.ndarray) -> tuple[np.ndarray, float]:
        theta = np.zeros(len(PARAMS))
        theta[act] = np.exp(z[:-1])
        return theta, 1.0 + 7.0 * float(expit(z[-1]))

    def resid(z: np.ndarray) -> np.ndarray:
        theta, p = unpack(z)
        pred = roofline_stack(st, theta, p)
        return np.concatenate([np.log(np.maximum(pred, 1e-9)) - ly, w * (z[:-1] - prior)])

    def jac(z: np.ndarray) -> np.ndarray:
        theta, p = unpack(z)
        return np.vstack([roofline_log_jacobian(st, theta, p, act, z[-1]), np.hstack([w * np.eye(len(act)),
                                                                                        np.zeros((len(act), 1))])])

    best = None
    for shift in (0.0, np.log(3.0)):
        z0 = np.append(prior + shift, zp0)
        with warnings.catch_warnings():  # trf's step search divides by a zero norm at exact optima
            warnings.simplefilter("ignore", RuntimeWarning)
            r = least_squares(resid, z0, jac=jac, method="trf", max_nfev=300, ftol=1e-6, xtol=1e-6,
                              x_scale="jac")
        if best is None or r.cost < best.cost:
            best = r
    theta, p = unpack(best.x)
    for a, b in ties.items():
        if a in active:
            theta[a] = theta[b]
    return theta, p
