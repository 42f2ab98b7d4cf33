"""Held-out error of a latency fit: leave-one-out and leave-one-*family*-out, with the fit's
own choices (prior weight, tied parameters) made by nested validation inside each
training split, never on the split being reported.

A family is a network design (VGG, ResNet, MobileNet-style inverted residuals, …): leaving
one whole family out asks what a user asks — how well does the profile price a model
*unlike* the ones it was fitted on. Leave-one-out keeps VGG-16 in the fit while VGG-19 is
predicted, which flatters every figure.

All functions are pure: `fit_predict(train, test, choice)` returns predictions for the
rows `test` of a model fitted on rows `train` under `choice`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# reference model → design family (mnasnet is MobileNetV2's inverted-residual block found
# by search, so it leaves with the MobileNets; AlexNet is its own plain-CNN family)
FAMILIES = {
    "vgg11": "vgg",
    "vgg13": "vgg",
    "vgg16": "vgg",
    "vgg19": "vgg",
    "resnet18": "resnet",
    "resnet34": "resnet",
    "resnet50": "resnet",
    "mobilenet_v2": "mobilenet",
    "mobilenet_v3_small": "mobilenet",
    "mnasnet": "mobilenet",
    "shufflenet_v2": "shufflenet",
    "squeezenet": "squeezenet",
    "googlenet": "inception",
    "alexnet": "alexnet",
    "efficientnet_b0": "efficientnet",
    "efficientnet_b4": "efficientnet",
}


def family_of(model: str) -> str:
    """Design family of a reference model (unlisted models are a family of their own)."""
    return FAMILIES.get(model, model)


@dataclass(frozen=True)
class FitChoice:
    """What the calibration may choose without looking at held-out rows: the weight of
    the log-space prior, whether vector / data-movement kernels share the conv kernels'
    per-kernel overhead, and whether depthwise FLOPs run at the dense conv's efficiency
    (leaving the depthwise class only its own per-kernel cost)."""

    prior_weight: float
    tie_overheads: bool
    tie_dw_compute: bool = False
    pooled_prior: bool = False  # prior centre: a pooled fit (one compute scale) of the same rows
    pool_compute: bool = False  # (the pooled fit itself) every compute class shares one scale

    def to_json(self) -> dict:
        return {
            "prior_weight": self.prior_weight,
            "tie_overheads": self.tie_overheads,
            "tie_dw_compute": self.tie_dw_compute,
            "pooled_prior": self.pooled_prior,
        }


# generic prior centres (weak) or shrinkage towards the pooled fit of the training rows,
# listed from the most regularised to the least (the order `choose` breaks near-ties by)
CHOICES = tuple(
    [FitChoice(w, True, d, pooled_prior=True) for w in (0.4, 0.1) for d in (True, False)]
    + [FitChoice(w, t, d) for w in (0.08, 0.02) for t in (True, False) for d in (True, False)]
)

FitPredict = Callable[[np.ndarray, np.ndarray, FitChoice], np.ndarray]


def mape(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y) / y))


def within10(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y) / y <= 0.10))


def folds(rows: np.ndarray, groups: Sequence[str]) -> list[np.ndarray]:
    """Index sets to hold out, one per distinct group among `rows` (order of appearance)."""
    seen: dict[str, list[int]] = {}
    for i in rows:
        seen.setdefault(groups[i], []).append(int(i))
    return [np.array(v) for v in seen.values()]


def cv_predictions(
    rows: np.ndarray, groups: Sequence[str], y: np.ndarray, fit_predict: FitPredict, choice: FitChoice
) -> np.ndarray:
    """Each row of `rows` predicted by a fit on the other groups among `rows` (NaN-free)."""
    pred = np.zeros(len(y))
    for test in folds(rows, groups):
        train = np.setdiff1d(rows, test)
        pred[test] = fit_predict(train, test, choice)
    return pred[rows]


def choose(
    rows: np.ndarray,
    groups: Sequence[str],
    y: np.ndarray,
    fit_predict: FitPredict,
    choices: Sequence[FitChoice] = CHOICES,
) -> FitChoice:
    """A choice validated on `rows` alone (leave-one-family-out when they hold ≥ 3 families,
    else 4-fold over the rows, interleaved) by the one-standard-error rule: the first (most regularised) of
    `choices` whose held-out MAPE is within one standard error of the best one's. A weakly
    regularised fit that wins the inner split by a hair extrapolates worst to a family it
    has never seen."""
    inner = groups if len({groups[i] for i in rows}) >= 3 else [f"row-fold-{i % 4}" for i in range(len(y))]
    per_fold = []
    for c in choices:
        rel = np.abs(cv_predictions(rows, inner, y, fit_predict, c) - y[rows]) / y[rows]
        per_fold.append(np.array([rel[np.isin(rows, f)].mean() for f in folds(rows, inner)]))
    means = np.array([f.mean() for f in per_fold])
    best = int(np.argmin(means))
    se = per_fold[best].std(ddof=1) / np.sqrt(len(per_fold[best])) if len(per_fold[best]) > 1 else 0.0
    return choices[int(np.flatnonzero(means <= means[best] + se)[0])]


def nested(
    outer: Sequence[str],
    inner: Sequence[str],
    y: np.ndarray,
    fit_predict: FitPredict,
    choices: Sequence[FitChoice] = CHOICES,
) -> tuple[np.ndarray, list[FitChoice]]:
    """Held-out predictions by `outer` group (families, or one group per row for LOO): for
    each, the choice is made on the remaining rows only (validated by `inner` groups),
    then fitted on them and used on the held-out rows."""
    n = len(y)
    pred = np.zeros(n)
    chosen: list[FitChoice] = [choices[0]] * n
    for test in folds(np.arange(n), outer):
        train = np.setdiff1d(np.arange(n), test)
        c = choose(train, inner, y, fit_predict, choices)
        pred[test] = fit_predict(train, test, c)
        for i in test:
            chosen[i] = c
    return pred, chosen
