"""Resumable steps: each step records the sha256 of its inputs and outputs (and its
parameters) in RUN_DIR/.quickstart/<step>.json; a rerun skips a step whose record still
matches the files on disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgedet.io.atomic import write_json_atomic
from edgedet.io.digest import update_from_file


def sha256_of(path: Path) -> str | None:
    """A file's sha256; a folder's over its files' relative paths and contents; None if absent."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        update_from_file(h, f)
    return h.hexdigest()


def _hashes(paths: list[Path]) -> dict[str, str | None]:
    return {str(p): sha256_of(p) for p in paths}


def run_step(run_dir: Path, name: str, params: dict[str, Any], inputs: list[Path], outputs: list[Path],
             work: Callable[[], None], log: Callable[[str], None]) -> bool:
    """Run `work` unless the record of `name` matches params, input and output hashes.
    Returns True when the step ran, False when it was skipped."""
    rec_path = run_dir / ".quickstart" / f"{name}.json"
    want = {"params": json.loads(json.dumps(params, default=str)), "inputs": _hashes(inputs)}
    if rec_path.is_file():
        rec = json.loads(rec_path.read_text())
        outs = _hashes(outputs)
        if (rec.get("params") == want["params"] and rec.get("inputs") == want["inputs"]
                and rec.get("outputs") == outs and all(outs.values())):
            log(f"{name}: done before (inputs and outputs unchanged, {rec_path}); skipped")
            return False
    rec_path.unlink(missing_ok=True)
    work()
    write_json_atomic(rec_path, {**want, "outputs": _hashes(outputs)})
    return True
