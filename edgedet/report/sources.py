"""Find and load a run directory's JSON outputs, classified by their content (not their
file names), so any folder of search / export / bench / predict outputs can be reported."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError


@dataclass
class Source:
    """One JSON document and where it came from (path relative to the run directory)."""

    path: str
    doc: dict[str, Any]


@dataclass
class RunInputs:
    """What a run directory holds, one list per kind of output."""

    root: Path
    searches: list[Source] = field(default_factory=list)  # search.json (history, LUT)
    archs: list[Source] = field(default_factory=list)  # arch.json (the contract)
    manifests: list[Source] = field(default_factory=list)  # export manifest.json
    benches: list[Source] = field(default_factory=list)  # bench result JSON (kind measured)
    predictions: list[Source] = field(default_factory=list)  # predict JSON (predicted: true)
    profiles: list[Source] = field(default_factory=list)  # device profile JSON
    trainings: list[Source] = field(default_factory=list)  # training metrics.json
    paretos: list[Source] = field(default_factory=list)  # pareto.json (quickstart)

    def is_empty(self) -> bool:
        return not any((self.searches, self.archs, self.manifests, self.benches, self.predictions,
                        self.trainings, self.paretos))


def kind_of(doc: Any) -> str | None:
    """Which edgedet output a JSON document is, from the fields each writer always sets."""
    if not isinstance(doc, dict):
        return None
    if "history" in doc and "lut" in doc and "choices" in doc:
        return "searches"
    if "stages" in doc and "stem" in doc:
        return "archs"
    if "model_file" in doc and "parity" in doc and "format" in doc:
        return "manifests"
    if doc.get("kind") == "measured" and isinstance(doc.get("results"), list) and "settings" in doc:
        return "benches"
    if doc.get("predicted") is True and "latency_ms" in doc and "profile" in doc:
        return "predictions"
    if "predictor" in doc and "calibration" in doc and "id" in doc:
        return "profiles"
    if "final_val_acc" in doc and "chance_acc" in doc:
        return "trainings"
    if doc.get("kind") == "pareto" and isinstance(doc.get("points"), list):
        return "paretos"
    return None


def load_run(run_dir: str | Path) -> RunInputs:
    """Every recognised JSON under `run_dir` (the report's own report/ folder excluded)."""
    root = Path(run_dir)
    if not root.exists():
        raise EdgedetError(f"run directory not found: {root}")
    if not root.is_dir():
        raise EdgedetError(f"{root} is not a directory")
    run = RunInputs(root=root)
    for p in sorted(root.rglob("*.json")):
        rel = p.relative_to(root)
        if rel.parts[0] == "report" or any(part.startswith(".") for part in rel.parts):
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not one of ours; the report lists only what it could read
        kind = kind_of(doc)
        if kind is not None:
            getattr(run, kind).append(Source(str(rel), doc))
    if run.is_empty():
        raise EdgedetError(f"{root} holds no edgedet outputs (search.json, arch.json, export manifest.json, "
                           "bench --json, predict --json)")
    return run
