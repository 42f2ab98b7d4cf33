"""arch.json: the architecture contract written by search and read by models, predict and export.

A QuadraNet-style macro skeleton: a stem, then stages of (width, stride, layers); a layer is
a QuadraBlock choice {"kernel": k, "expansion": e} or "skip" (identity).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LayerChoice:
    """One QuadraBlock: quadratic depthwise kernel size and MLP expansion ratio."""

    kernel: int
    expansion: int

    def to_json(self) -> dict[str, int]:
        return {"kernel": self.kernel, "expansion": self.expansion}


Layer = LayerChoice | None  # None = "skip" (identity)


@dataclass
class Stem:
    kernel: int = 4
    stride: int = 4


@dataclass
class Stage:
    width: int
    stride: int
    layers: list[Layer]


@dataclass
class Arch:
    """A concrete network of the search space (see docs/arch-json.md)."""

    stem: Stem
    stages: list[Stage]
    input_size: int = 224
    num_classes: int = 1000
    device: str | None = None
    budget_ms: float | None = None
    predicted_latency_ms: float | None = None
    profile: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        return [s.width for s in self.stages]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "device": self.device,
            "budget_ms": self.budget_ms,
            "predicted_latency_ms": self.predicted_latency_ms,
            "profile": self.profile,
            "stem": {"kernel": self.stem.kernel, "stride": self.stem.stride},
            "stages": [
                {
                    "width": s.width,
                    "stride": s.stride,
                    "layers": ["skip" if l is None else l.to_json() for l in s.layers],
                }
                for s in self.stages
            ],
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Any, source: str = "arch.json") -> Arch:
        return _parse(d, source)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())


def uniform_arch(widths: list[int], depths: list[int], kernel: int = 7, expansion: int = 4,
                 **kw: Any) -> Arch:
    """Every layer the same QuadraBlock (the hand-designed QuadraNet family)."""
    stages = [
        Stage(width=w, stride=1 if i == 0 else 2, layers=[LayerChoice(kernel, expansion)] * d)
        for i, (w, d) in enumerate(zip(widths, depths, strict=True))
    ]
    return Arch(stem=Stem(), stages=stages, **kw)


def load_arch(path: str | Path) -> Arch:
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"arch file not found: {p}")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgedetError(f"{p}: not valid JSON ({e})") from None
    return _parse(d, str(p))


def _bad(source: str, where: str, why: str) -> EdgedetError:
    return EdgedetError(f"{source}: field '{where}' {why}")


def _int(d: dict, key: str, source: str, where: str, lo: int = 1) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _bad(source, f"{where}{key}", f"must be an integer ≥ {lo}, got {v!r}")
    return v


def _opt_num(d: dict, key: str, source: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(source, key, f"must be a positive number or null, got {v!r}")
    return float(v)


_KNOWN = {"schema_version", "input_size", "num_classes", "device", "budget_ms", "predicted_latency_ms",
          "profile", "stem", "stages"}


def _parse(d: Any, source: str) -> Arch:
    if not isinstance(d, dict):
        raise EdgedetError(f"{source}: expected a JSON object at the top level")
    ver = d.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise _bad(source, "schema_version", f"must be {SCHEMA_VERSION}, got {ver!r}")
    stem_d = d.get("stem", {"kernel": 4, "stride": 4})
    if not isinstance(stem_d, dict):
        raise _bad(source, "stem", "must be an object")
    stem = Stem(kernel=_int(stem_d, "kernel", source, "stem."),
                stride=_int(stem_d, "stride", source, "stem."))
    stages_d = d.get("stages")
    if not isinstance(stages_d, list) or not stages_d:
        raise _bad(source, "stages", "must be a non-empty list")
    stages = []
    for i, s in enumerate(stages_d):
        where = f"stages[{i}]."
        if not isinstance(s, dict):
            raise _bad(source, f"stages[{i}]", "must be an object")
        width = _int(s, "width", source, where)
        stride = _int(s, "stride", source, where)
        if stride not in (1, 2):
            raise _bad(source, f"{where}stride", f"must be 1 or 2, got {stride}")
        layers_d = s.get("layers")
        if not isinstance(layers_d, list):
            raise _bad(source, f"{where}layers", "must be a list")
        layers: list[Layer] = []
        for j, l in enumerate(layers_d):
            lw = f"{where}layers[{j}]"
            if l == "skip":
                layers.append(None)
            elif isinstance(l, dict):
                k = _int(l, "kernel", source, lw + ".")
                if k % 2 == 0:
                    raise _bad(source, f"{lw}.kernel", f"must be odd, got {k}")
                layers.append(LayerChoice(k, _int(l, "expansion", source, lw + ".")))
            else:
                raise _bad(source, lw, f"must be {{'kernel','expansion'}} or 'skip', got {l!r}")
        stages.append(Stage(width=width, stride=stride, layers=layers))
    profile = d.get("profile")
    if profile is not None and not isinstance(profile, dict):
        raise _bad(source, "profile", "must be an object or null")
    device = d.get("device")
    if device is not None and not isinstance(device, str):
        raise _bad(source, "device", "must be a string or null")
    return Arch(
        stem=stem,
        stages=stages,
        input_size=_int(d, "input_size", source, "") if "input_size" in d else 224,
        num_classes=_int(d, "num_classes", source, "") if "num_classes" in d else 1000,
        device=device,
        budget_ms=_opt_num(d, "budget_ms", source),
        predicted_latency_ms=_opt_num(d, "predicted_latency_ms", source),
        profile=profile,
        extra={k: v for k, v in d.items() if k not in _KNOWN},
    )
