"""Numerical parity of an exported model against PyTorch eager on seeded inputs.

An element passes when `|got − ref| ≤ atol + rtol·|ref|` (numpy.allclose's rule), so an
output with large values is judged relative to its size. Each output is reported with its
shape, max abs error, max rel error (over elements with |ref| > atol) and where the worst
element sits. Integer outputs (detector labels) must match exactly. The gate passes when
every output of every batch size is within the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """`|got − ref| ≤ atol + rtol·|ref|` element by element."""

    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"atol {self.atol:g} + rtol {self.rtol:g}·|ref|"


# outputs are logits / normalised boxes / scores; rtol lets large activations scale the bound
DEFAULT_TOLERANCE = {
    "fp32": Tolerance(1e-4, 1e-3),
    "fp16": Tolerance(1e-2, 1e-2),
    "bf16": Tolerance(5e-2, 5e-2),
}


@dataclass
class OutputError:
    name: str
    shape: list[int]
    max_abs_err: float
    mean_abs_err: float
    max_abs_ref: float
    max_rel_err: float = 0.0  # over elements with |ref| > atol
    excess: float = 0.0  # max |got − ref| / (atol + rtol·|ref|): ≤ 1 passes
    where: list[int] | None = None  # index of the element with the largest excess
    ref_at: float | None = None
    got_at: float | None = None
    mismatches: int | None = None  # integer outputs: elements that differ

    @property
    def passed(self) -> bool:
        return self.excess <= 1.0

    def to_json(self) -> dict:
        return {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def line(self) -> str:
        if self.mismatches is not None:
            return f"{self.name} {self.shape}: {self.mismatches} of the integer values differ"
        if not math.isfinite(self.max_abs_err):
            return f"{self.name}: shape or values not comparable (max abs err inf)"
        at = f" at {self.where} (ref {self.ref_at:.6g}, got {self.got_at:.6g})" if self.where is not None else ""
        return (
            f"{self.name} {self.shape}: max abs {self.max_abs_err:.3g}, max rel {self.max_rel_err:.3g}, "
            f"mean abs {self.mean_abs_err:.3g}, max |ref| {self.max_abs_ref:.3g}, "
            f"{self.excess:.3g}× the bound{at}"
        )


@dataclass
class ParityCase:
    batch: int
    outputs: list[OutputError]

    @property
    def max_abs_err(self) -> float:
        return max((o.max_abs_err for o in self.outputs), default=math.nan)

    @property
    def mean_abs_err(self) -> float:
        return max((o.mean_abs_err for o in self.outputs), default=math.nan)


@dataclass
class ParityResult:
    """Worst-case figures over all cases; `passed` when every output is within its bound."""

    runtime: str
    precision: str
    tolerance: Tolerance
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
    def excess(self) -> float:
        return max((o.excess for c in self.cases for o in c.outputs), default=math.inf)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and self.excess <= 1.0

    def failing(self) -> list[tuple[int, OutputError]]:
        return [(c.batch, o) for c in self.cases for o in c.outputs if not o.passed]

    def to_json(self) -> dict:
        cases = []
        for c in self.cases:
            outs = [o.to_json() for o in c.outputs]
            cases.append({"batch": c.batch, "max_abs_err": _finite(c.max_abs_err), "outputs": outs})
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "seed": self.seed,
            "note": self.note,
            "passed": self.passed,
            "max_abs_err": _finite(self.max_abs_err),
            "mean_abs_err": _finite(self.mean_abs_err),
            "excess": _finite(self.excess),
            "metric": "|runtime − pytorch| ≤ atol + rtol·|pytorch| for every element of every output and batch",
            "cases": cases,
        }

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        per = ", ".join(f"batch {c.batch}: max abs {c.max_abs_err:.3g}" for c in self.cases)
        return (
            f"parity {verdict} ({self.runtime}, {self.precision}): max abs err {self.max_abs_err:.3g}, "
            f"{self.excess:.3g}× the bound ({self.tolerance}); {per}"
        )


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else "inf")


def compare_output(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> OutputError:
    """One output's errors under `tol`; a shape change or non-finite value is an infinite error."""
    r, g = np.asarray(ref), np.asarray(got)
    shape = [int(s) for s in r.shape]
    max_ref = float(np.abs(r).max(initial=0)) if r.dtype != bool else float(r.any())
    if r.shape != g.shape:
        return OutputError(name, shape, math.inf, math.inf, max_ref, math.inf, math.inf)
    if np.issubdtype(r.dtype, np.integer) or r.dtype == bool:
        bad = int((r != g.astype(r.dtype)).sum())
        err = 0.0 if bad == 0 else math.inf
        return OutputError(name, shape, err, err, max_ref, err, err, mismatches=bad)
    if r.size == 0:
        return OutputError(name, shape, 0.0, 0.0, 0.0)
    r64, g64 = r.astype(np.float64), g.astype(np.float64)
    d = np.asarray(np.abs(r64 - g64))
    d[np.isnan(r64) & np.isnan(g64)] = 0.0  # NaN where PyTorch has NaN too
    d[np.isnan(d)] = math.inf
    ratio = d / (tol.atol + tol.rtol * np.abs(np.nan_to_num(r64)))
    worst = np.unravel_index(int(np.argmax(ratio)), r.shape)
    big = np.abs(r64) > tol.atol
    rel = float((d[big] / np.abs(r64[big])).max()) if big.any() else 0.0
    return OutputError(
        name,
        shape,
        float(d.max()),
        float(d.mean()),
        max_ref,
        rel,
        float(ratio.max()),
        [int(i) for i in worst],
        float(r64[worst]),
        float(g64[worst]),
    )


def compare(
    names: Sequence[str], ref: Sequence[np.ndarray], got: Sequence[np.ndarray], batch: int, tol: Tolerance
) -> ParityCase:
    """Per-output errors of one run."""
    if len(ref) != len(got):
        raise ValueError(f"runtime returned {len(got)} outputs, PyTorch {len(ref)}")
    return ParityCase(batch, [compare_output(n, r, g, tol) for n, r, g in zip(names, ref, got, strict=True)])


def check(
    names: Sequence[str],
    make_inputs: Callable[[int], list[np.ndarray]],
    reference: Callable[[list[np.ndarray]], list[np.ndarray]],
    runtime: Callable[[list[np.ndarray]], list[np.ndarray]],
    batches: Sequence[int],
    *,
    runtime_name: str,
    precision: str,
    tolerance: Tolerance,
    seed: int,
    note: str = "",
) -> ParityResult:
    """Run reference and runtime on the same seeded inputs for every batch size."""
    res = ParityResult(runtime_name, precision, tolerance, seed, note=note)
    for b in batches:
        x = make_inputs(b)
        res.cases.append(compare(names, reference(x), runtime(x), b, tolerance))
    return res
