"""The exported-artifact folder: model file(s) + manifest.json, written atomically.

An artifact is built in a hidden temp folder next to its destination and renamed into
place only after the parity gate passed, so a folder with a manifest.json is always a
complete, checked export. `load_manifest(dir)` is the reader other tools (bench) use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.io.digest import sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FORMATS = ("onnx", "openvino", "tvm", "tensorrt")


def file_entries(folder: Path, names: list[str]) -> dict[str, dict]:
    """{file: {sha256, bytes}} for the listed files of `folder`."""
    return {n: {"sha256": sha256_file(folder / n), "bytes": (folder / n).stat().st_size} for n in names}


@contextmanager
def staging_dir(out: Path):
    """A temp folder next to `out` (same filesystem, so the final rename is atomic).

    The caller fills it and calls `commit(staging, out)`; on any exit without commit the
    temp folder is removed, and `out` is never touched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_unlisted(staging: Path, names: list[str]) -> None:
    """Delete helper files of the build (anything not in `names`) before the commit."""
    for p in staging.iterdir():
        if p.name not in names:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def commit(staging: Path, out: Path, manifest: dict) -> None:
    """Write manifest.json into `staging` and move the folder to `out`.

    An existing `out` is replaced only if it is an edgedet artifact (has a manifest.json)
    or empty; anything else is refused so user files are never deleted.
    """
    out = Path(out)
    write_json_atomic(staging / MANIFEST, manifest)
    staging.chmod(0o755)  # mkdtemp makes it private
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists()):
            raise EdgedetError(f"{out} exists and is not an edgedet artifact folder; choose another --out")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


@dataclass(frozen=True)
class Manifest:
    """The fields of manifest.json a runner needs; `data` keeps the whole document."""

    folder: Path
    format: str
    target: str
    precision: str
    files: dict[str, dict]
    inputs: list[dict]
    outputs: list[dict]
    custom_ops: list[str]
    data: dict

    def path(self, name: str) -> Path:
        """Absolute path of an artifact file listed in the manifest."""
        if name not in self.files:
            raise KeyError(f"{name} is not a file of this artifact ({', '.join(self.files)})")
        return self.folder / name

    @property
    def model_file(self) -> Path:
        return self.folder / self.data["model_file"]


def load_manifest(folder: str | Path, verify: bool = True) -> Manifest:
    """Read `folder/manifest.json`; with `verify`, check every file's sha256.

    Any problem (missing folder/manifest, unknown schema, changed file) is an EdgedetError.
    """
    folder = Path(folder)
    p = folder / MANIFEST
    if not p.is_file():
        raise EdgedetError(f"{folder} is not an edgedet export artifact (no {MANIFEST})")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgedetError(f"cannot read {p}: {e}") from e
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        got = data.get("schema_version") if isinstance(data, dict) else None
        raise EdgedetError(f"{p}: schema_version {got!r} is not supported (expected {SCHEMA_VERSION})")
    for key in ("format", "target", "precision", "files", "inputs", "outputs", "custom_ops", "model_file"):
        if key not in data:
            raise EdgedetError(f"{p}: missing field '{key}'")
    if data["format"] not in FORMATS:
        raise EdgedetError(f"{p}: unknown format {data['format']!r}")
    if verify:
        for name, entry in data["files"].items():
            f = folder / name
            if not f.is_file():
                raise EdgedetError(f"{folder}: file {name} listed in the manifest is missing")
            if sha256_file(f) != entry["sha256"]:
                raise EdgedetError(f"{folder}: {name} does not match its sha256 in the manifest (modified?)")
    return Manifest(
        folder,
        data["format"],
        data["target"],
        data["precision"],
        data["files"],
        data["inputs"],
        data["outputs"],
        data["custom_ops"],
        data,
    )
