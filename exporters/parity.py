"""Numerical parity of an exported model against PyTorch eager on seeded inputs.

Float outputs are compared by max and mean absolute error; integer outputs (detector
labels) must match exactly, and a mismatch counts as an infinite error. The gate passes
when the worst max-abs error over every batch size and output is within the tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

# Absolute tolerances on the max error (outputs are logits / normalised boxes / scores).
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}


@dataclass
class OutputError:
    name: str
    max_abs_err: float
    mean_abs_err: float
    max_abs_ref: float
    mismatches: int | None = None  # integer outputs: elements that differ


@dataclass
class ParityCase:
    batch: int
    max_abs_err: float
    mean_abs_err: float
    outputs: list[OutputError]


@dataclass
class ParityResult:
    """Worst-case figures over all cases; `passed` is max_abs_err <= tolerance."""

    runtime: str
    precision: str
    tolerance: float
    seed: int
    cases: list[ParityCase] = field(default_factory=list)
    note: str = ""

    @property
    def max_abs_err(self) -> float:
        return max((c.max_abs_err for c in self.cases), default=math.nan)

    @property
    def mean_abs_err(self) -> float:
        return max((c.mean_abs_err for c in self.cases), default=math.nan)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and self.max_abs_err <= self.tolerance

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(
            max_abs_err=_finite(self.max_abs_err),
            mean_abs_err=_finite(self.mean_abs_err),
            passed=self.passed,
            metric="max |runtime - pytorch| over all outputs and batch sizes",
        )
        for c in d["cases"]:
            c["max_abs_err"] = _finite(c["max_abs_err"])
            for o in c["outputs"]:
                o["max_abs_err"] = _finite(o["max_abs_err"])
        return d

    def summary(self) -> str:
        per = ", ".join(
            f"batch {c.batch}: max {c.max_abs_err:.3g} mean {c.mean_abs_err:.3g}" for c in self.cases
        )
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"parity {verdict} ({self.runtime}, {self.precision}): max abs err {self.max_abs_err:.3g} "
            f"(tolerance {self.tolerance:g}); {per}"
        )


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else "inf"


def compare(
    names: Sequence[str], ref: Sequence[np.ndarray], got: Sequence[np.ndarray], batch: int
) -> ParityCase:
    """Per-output errors of one run; shapes must match (a shape change is a failure)."""
    if len(ref) != len(got):
        raise ValueError(f"runtime returned {len(got)} outputs, PyTorch {len(ref)}")
    outs = []
    for name, r, g in zip(names, ref, got, strict=True):
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            outs.append(OutputError(name, math.inf, math.inf, float(np.abs(r).max(initial=0))))
            continue
        if np.issubdtype(r.dtype, np.integer) or r.dtype == bool:
            bad = int((r != g.astype(r.dtype)).sum())
            err = 0.0 if bad == 0 else math.inf
            outs.append(OutputError(name, err, err, float(np.abs(r).max(initial=0)), bad))
            continue
        d = np.abs(r.astype(np.float64) - g.astype(np.float64))
        outs.append(
            OutputError(
                name,
                float(d.max(initial=0)),
                float(d.mean()) if d.size else 0.0,
                float(np.abs(r).max(initial=0)),
            )
        )
    return ParityCase(batch, max(o.max_abs_err for o in outs), max(o.mean_abs_err for o in outs), outs)


def check(
    names: Sequence[str],
    make_inputs: Callable[[int], list[np.ndarray]],
    reference: Callable[[list[np.ndarray]], list[np.ndarray]],
    runtime: Callable[[list[np.ndarray]], list[np.ndarray]],
    batches: Sequence[int],
    *,
    runtime_name: str,
    precision: str,
    tolerance: float,
    seed: int,
    note: str = "",
) -> ParityResult:
    """Run reference and runtime on the same seeded inputs for every batch size."""
    res = ParityResult(runtime_name, precision, tolerance, seed, note=note)
    for b in batches:
        x = make_inputs(b)
        res.cases.append(compare(names, reference(x), runtime(x), b))
    return res
