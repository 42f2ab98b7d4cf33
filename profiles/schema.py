"""Device-profile schema: a profile JSON is checked field by field on load, and a bad one
is rejected with the field named (EdgedetError), never half-used."""

from __future__ import annotations

import math
from typing import Any

from edgedet.errors import EdgedetError

SCHEMA_VERSION = 2
# 1: measured profiles written before leave-one-family-out error (still readable);
# 2: predicted profiles state `calibration.error_basis`, `lofo_mape` (null when the data is
#    one family) and `loo_mape`; roofline classes may carry `spill_scale` (with
#    `hardware.onchip_bytes`).
READABLE_VERSIONS = (1, 2)
ERROR_BASES = ("leave-one-family-out", "leave-one-out", "cross-validated")
KINDS = ("predicted", "measured")
PREDICTOR_TYPES = ("roofline", "linear")
LINEAR_FEATURES = (
    "const",
    "flops",
    "bytes_read",
    "bytes_written",
    "weight_bytes",
    "out_elems",
    "in_elems",
    "flops_per_out",
    "spill_bytes",
    "dram_bytes",
    "far_bytes",
)


def _bad(src: str, field: str, why: str) -> EdgedetError:
    return EdgedetError(f"invalid device profile {src}: field '{field}' {why}")


def _get(d: dict, key: str, typ: type | tuple, src: str, where: str) -> Any:
    path = f"{where}.{key}" if where else key
    if not isinstance(d, dict) or key not in d:
        raise _bad(src, path, "is missing")
    v = d[key]
    if typ in (float, (int, float)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(src, path, f"must be a finite number, got {v!r:.60}")
        return float(v)
    if not isinstance(v, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise _bad(src, path, f"must be a {name}, got {type(v).__name__}")
    return v


def _nonneg(d: dict, key: str, src: str, where: str) -> float:
    v = _get(d, key, float, src, where)
    if v < 0:
        raise _bad(src, f"{where}.{key}", f"must be ≥ 0, got {v}")
    return v


def validate(doc: Any, src: str) -> dict:
    """Check a profile document; return it unchanged when valid."""
    if not isinstance(doc, dict):
        raise EdgedetError(f"invalid device profile {src}: top level must be a JSON object")
    ver = _get(doc, "schema_version", int, src, "")
    if ver not in READABLE_VERSIONS:
        raise _bad(src, "schema_version", f"must be one of {READABLE_VERSIONS}, got {ver}")
    pid = _get(doc, "id", str, src, "")
    if not pid:
        raise _bad(src, "id", "must not be empty")
    kind = _get(doc, "kind", str, src, "")
    if kind not in KINDS:
        raise _bad(src, "kind", f"must be one of {KINDS}, got {kind!r}")
    rt = _get(doc, "runtime", dict, src, "")
    _get(rt, "name", str, src, "runtime")
    _nonneg(rt, "threads", src, "runtime")
    eb = _get(doc, "element_bytes", float, src, "")
    if eb not in (1.0, 2.0, 4.0):
        raise _bad(src, "element_bytes", f"must be 1, 2 or 4, got {eb}")
    _check_hardware(_get(doc, "hardware", dict, src, ""), kind, src)
    fus = doc.get("fusion", {})
    if not isinstance(fus, dict):
        raise _bad(src, "fusion", "must be an object")
    if "epilogues" in fus and not (
        isinstance(fus["epilogues"], list) and all(isinstance(e, str) for e in fus["epilogues"])
    ):
        raise _bad(src, "fusion.epilogues", "must be a list of strings")
    _check_predictor(_get(doc, "predictor", dict, src, ""), src)
    _check_calibration(_get(doc, "calibration", dict, src, ""), ver, kind, src)
    return doc


def _check_hardware(hw: dict, kind: str, src: str) -> None:
    _get(hw, "name", str, src, "hardware")
    if kind != "predicted":
        return
    for k in ("peak_gflops", "bandwidth_gbs"):
        if _nonneg(hw, k, src, "hardware") <= 0:
            raise _bad(src, f"hardware.{k}", "must be > 0")
    if "onchip_bytes" in hw:
        _nonneg(hw, "onchip_bytes", src, "hardware")
    srcs = _get(hw, "sources", list, src, "hardware")
    if not srcs or not all(isinstance(s, str) and s for s in srcs):
        raise _bad(src, "hardware.sources", "must be a non-empty list of strings")


def _check_predictor(pred: dict, src: str) -> None:
    ptype = _get(pred, "type", str, src, "predictor")
    if ptype not in PREDICTOR_TYPES:
        raise _bad(src, "predictor.type", f"must be one of {PREDICTOR_TYPES}, got {ptype!r}")
    classes = _get(pred, "classes", dict, src, "predictor")
    if not classes:
        raise _bad(src, "predictor.classes", "must not be empty")
    for cls, spec in classes.items():
        _check_class(spec, ptype, src, f"predictor.classes.{cls}")
    if ptype == "roofline":
        _nonneg(pred, "fixed_us", src, "predictor")
    for opt in ("fixed_us", "kernel_overhead_us"):
        if opt in pred:
            _nonneg(pred, opt, src, "predictor")
    if "context_scale" in pred:
        scales = _get(pred, "context_scale", dict, src, "predictor")
        for c, v in scales.items():
            if c not in classes:
                raise _bad(src, f"predictor.context_scale.{c}", "names no class of predictor.classes")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise _bad(src, f"predictor.context_scale.{c}", "must be a finite number > 0")


def _check_class(spec: Any, ptype: str, src: str, where: str) -> None:
    if not isinstance(spec, dict):
        raise _bad(src, where, "must be an object")
    if ptype == "roofline":
        for k in ("overhead_us", "compute_scale", "memory_scale"):
            _nonneg(spec, k, src, where)
        if "spill_scale" in spec:
            _nonneg(spec, "spill_scale", src, where)
        return
    key = "log_coef" if "log_coef" in spec else "coef"
    coef = _get(spec, key, dict, src, where)
    if not coef:
        raise _bad(src, f"{where}.{key}", "must not be empty")
    for f, v in coef.items():
        if f not in LINEAR_FEATURES:
            raise _bad(src, f"{where}.{key}.{f}", f"is not a known feature {LINEAR_FEATURES}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(src, f"{where}.{key}.{f}", "must be a finite number")
    if "min_us" in spec:
        _nonneg(spec, "min_us", src, where)


def _check_calibration(cal: dict, ver: int, kind: str, src: str) -> None:
    for k in ("mape", "within10"):
        v = _get(cal, k, float, src, "calibration")
        if v < 0:
            raise _bad(src, f"calibration.{k}", "must be ≥ 0")
    _get(cal, "method", str, src, "calibration")
    if ver >= 2 and kind == "predicted":
        basis = _get(cal, "error_basis", str, src, "calibration")
        if basis not in ERROR_BASES:
            raise _bad(src, "calibration.error_basis", f"must be one of {ERROR_BASES}, got {basis!r}")
        _nonneg(cal, "loo_mape", src, "calibration")
        if "lofo_mape" not in cal:
            raise _bad(src, "calibration.lofo_mape", "is missing (null when the data is one family)")
        if cal["lofo_mape"] is not None:
            _nonneg(cal, "lofo_mape", src, "calibration")
