"""Load a device profile by shipped id or by path, validated against the schema."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgedet.cpu import VectorIsa
from edgedet.errors import EdgedetError
from edgedet.profiles.schema import validate

PROFILE_DIR = Path(__file__).resolve().parent


def shipped_ids() -> list[str]:
    """Ids of the profiles shipped in the package (profiles/<id>.json)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


@dataclass
class Profile:
    """A validated device profile. `doc` is the whole JSON; the fields below are its
    most used parts."""

    id: str
    kind: str
    runtime: dict
    calibration: dict
    element_bytes: float
    predictor: dict
    fusion: dict
    hardware: dict
    path: str
    doc: dict = field(repr=False, default_factory=dict)

    @property
    def runtime_name(self) -> str:
        return str(self.runtime.get("name", "?"))

    def isa_warning(self, host: VectorIsa) -> str | None:
        """For a measured profile: a warning when this host's vector ISA is not the one it was measured on."""
        measured = (self.hardware.get("isa") or {}).get("best") if self.kind == "measured" else None
        if measured is None or measured == host.best:
            return None
        return (
            f"profile '{self.id}' was measured on a {measured} CPU; this host is {host.best}"
            f"{f' ({host.cap})' if host.cap else ''}: its kernel timings may not hold here"
        )

    def describe(self) -> str:
        """One line: which profile, what kind, and its own error."""
        return f"{self.kind} profile '{self.id}' ({self.runtime_name}; {self.error_summary()})"

    def error_summary(self) -> str:
        """Its held-out error: leave-one-family-out MAPE first where it has one, LOO beside."""
        c = self.calibration
        basis = c.get("error_basis", "held-out")
        s = f"{basis} MAPE {100 * c['mape']:.1f}%, {100 * c['within10']:.0f}% within ±10%"
        if basis == "leave-one-family-out" and c.get("loo_mape") is not None:
            s += f"; leave-one-out {100 * c['loo_mape']:.1f}%"
        return s


def from_document(doc: dict, src: str = "<memory>") -> Profile:
    validate(doc, src)
    return Profile(
        id=doc["id"],
        kind=doc["kind"],
        runtime=doc["runtime"],
        calibration=doc["calibration"],
        element_bytes=float(doc["element_bytes"]),
        predictor=doc["predictor"],
        fusion=doc.get("fusion", {}),
        hardware=doc["hardware"],
        path=src,
        doc=doc,
    )


def load_profile(id_or_path: str | Path) -> Profile:
    """A shipped id ('cortex-a76') or a path to a profile JSON file."""
    s = str(id_or_path)
    p = Path(s)
    if not (s.endswith(".json") or p.is_file() or "/" in s):
        p = PROFILE_DIR / f"{s}.json"
        if not p.is_file():
            raise EdgedetError(
                f"unknown device profile {s!r}; shipped profiles: {', '.join(shipped_ids())} "
                "(or give a path to a profile JSON)"
            )
    if not p.is_file():
        raise EdgedetError(f"device profile file not found: {p}")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgedetError(f"invalid device profile {p}: not readable JSON ({e})") from None
    return from_document(doc, str(p))
