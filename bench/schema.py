"""The bench result JSON: its versioned schema (a JSON Schema subset, so any JSON-Schema tool
can check it too) and a small validator that names the first bad field.
`python -m edgedet.bench.schema` prints the schema."""

from __future__ import annotations

import json
import sys

from edgedet.errors import EdgedetError
from edgedet.precision import CANONICAL

SCHEMA_VERSION = 2  # 2: canonical precision names (fp32, …), device.isa

_NUM = {"type": "number", "minimum": 0}
_NUM_OR_NULL = {"type": ["number", "null"]}
_LATENCY = {
    "type": "object",
    "required": ["min", "mean", "median", "p90", "p95", "p99", "max", "std"],
    "properties": {k: _NUM for k in ("min", "mean", "median", "p90", "p95", "p99", "max", "std")},
}

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgedet bench result",
    "type": "object",
    "required": ["schema_version", "kind", "device", "runtime", "settings", "results"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "kind": {"const": "measured"},
        "device": {
            "type": "object",
            "required": ["name", "cpu_model", "isa", "logical_cpus", "os"],
            "properties": {
                "name": {"type": "string"},
                "cpu_model": {"type": "string"},
                "isa": {"type": ["object", "null"]},
                "physical_cores": {"type": ["integer", "null"]},
                "logical_cpus": {"type": ["integer", "null"]},
                "gpus": {"type": "array"},
                "os": {"type": "string"},
                "load_average_1m": _NUM_OR_NULL,
                "remote": {"type": ["string", "null"]},
            },
        },
        "runtime": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {
                "name": {"enum": ["torch", "onnxruntime", "openvino", "tvm", "tensorrt"]},
                "version": {"type": "string"},
                "versions": {"type": "object"},
                "effective": {"type": "object"},
            },
        },
        "settings": {
            "type": "object",
            "required": [
                "target",
                "device",
                "threads",
                "streams",
                "precision",
                "batches",
                "warmup_s",
                "duration_s",
                "min_iters",
                "timing",
                "memory_method",
            ],
            "properties": {
                "target": {"type": "string"},
                "device": {"type": "string"},
                "threads": {"type": "integer", "minimum": 0},  # 0: a remote board's own default
                "streams": {"type": "integer", "minimum": 1},
                "precision": {"enum": list(CANONICAL)},
                "batches": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                "warmup_s": _NUM,
                "duration_s": _NUM,
                "min_iters": {"type": "integer", "minimum": 1},
                "input_size": {"type": ["integer", "null"]},
                "timing": {"type": "string"},
                "memory_method": {"type": "string"},
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "batch",
                    "latency_ms",
                    "cov",
                    "throughput_items_per_s",
                    "peak_memory_mib",
                    "first_inference_ms",
                    "iterations",
                ],
                "properties": {
                    "batch": {"type": "integer", "minimum": 1},
                    "latency_ms": _LATENCY,
                    "cov": _NUM,
                    "throughput_items_per_s": _NUM,
                    "peak_memory_mib": _NUM_OR_NULL,
                    "first_inference_ms": _NUM,
                    "load_ms": _NUM,
                    "iterations": {"type": "integer", "minimum": 1},
                    "roofline": {"type": ["object", "null"]},
                },
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
        "roofline": {"type": ["object", "null"]},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def errors(obj, schema: dict = SCHEMA, path: str = "$") -> list[str]:
    """Every violation of `schema` in `obj`, each naming its JSON path."""
    out: list[str] = []
    if "const" in schema and obj != schema["const"]:
        out.append(f"{path}: expected {schema['const']!r}, got {obj!r}")
    if "enum" in schema and obj not in schema["enum"]:
        out.append(f"{path}: {obj!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(obj, t) for t in types):
            return out + [f"{path}: expected {' or '.join(types)}, got {type(obj).__name__}"]
    if "minimum" in schema and _is(obj, "number") and obj < schema["minimum"]:
        out.append(f"{path}: {obj} is below the minimum {schema['minimum']}")
    if isinstance(obj, dict):
        out += [f"{path}.{k}: missing" for k in schema.get("required", []) if k not in obj]
        for k, sub in schema.get("properties", {}).items():
            if k in obj:
                out += errors(obj[k], sub, f"{path}.{k}")
    if isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            out += errors(item, schema["items"], f"{path}[{i}]")
    return out


def validate(obj: dict) -> None:
    """Raise EdgedetError naming the first bad field(s) when `obj` is not a valid bench result."""
    errs = errors(obj)
    if errs:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise EdgedetError(f"not a valid bench result (schema v{SCHEMA_VERSION}): {errs[0]}{more}")


if __name__ == "__main__":
    json.dump(SCHEMA, sys.stdout, indent=2)
    print()
