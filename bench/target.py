"""What `edgedet bench` was pointed at: an export folder (manifest.json + model files), a bare
model file, or — for `--runtime torch` only — a registered model name. Only file formats are
used here, never the code that wrote them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from edgedet.errors import EdgedetError
from edgedet.io.digest import sha256_file

# Per runtime, the suffixes it runs in order of preference inside an artifact folder.
PREFERRED = {
    "onnxruntime": (".onnx",),
    "openvino": (".xml", ".onnx"),
    "tvm": (".so", ".tar", ".dylib"),
    "tensorrt": (".engine", ".plan", ".onnx"),
}


@dataclass
class Target:
    """`path` is what the child loads (a file, or a model name for torch)."""

    spec: str  # what the user typed
    path: str
    kind: str  # "file" or "name"
    onnx_path: str | None = None  # an ONNX graph of the same model, for FLOP / byte counting
    inputs: list[dict] | None = None  # declared inputs from manifest.json
    manifest: dict | None = None
    sha256: str | None = None

    def as_dict(self) -> dict:
        d = {"target": self.spec, "path": self.path, "kind": self.kind, "sha256": self.sha256}
        if self.manifest is not None:
            m = self.manifest
            d["manifest"] = {k: m[k] for k in ("format", "target", "precision", "model_file") if k in m}
            if isinstance(m.get("source"), dict):
                d["manifest"]["source_model"] = m["source"].get("model")
        return d


def resolve(spec: str, runtime: str) -> Target:
    """Find the model file `runtime` should load; every failure names the path and what was expected."""
    if runtime == "torch":
        if os.path.exists(spec):
            raise EdgedetError(
                f"--runtime torch benches a registered model name (see `edgedet models`), not a file: {spec}"
            )
        return Target(spec=spec, path=spec, kind="name")
    wanted = PREFERRED[runtime]
    if os.path.isdir(spec):
        return _from_folder(spec, runtime, wanted)
    if not os.path.exists(spec):
        hint = (
            " (model names run only with --runtime torch; export the model for other runtimes)"
            if not os.path.splitext(spec)[1]
            else ""
        )
        raise EdgedetError(f"no such artifact: {spec}{hint}")
    suffix = os.path.splitext(spec)[1].lower()
    if suffix not in wanted:
        raise EdgedetError(
            f"--runtime {runtime} runs {' / '.join(wanted)} files or an export folder, "
            f"not '{os.path.basename(spec)}'"
        )
    if runtime == "tvm":
        raise EdgedetError(
            f"a TVM library does not record its input shapes; bench the export folder that "
            f"holds {os.path.basename(spec)} and its manifest.json"
        )
    if suffix == ".xml" and not os.path.exists(spec[:-4] + ".bin"):
        raise EdgedetError(
            f"OpenVINO IR {spec} has no weights file {os.path.basename(spec[:-4])}.bin beside it"
        )
    return Target(
        spec=spec,
        path=spec,
        kind="file",
        onnx_path=spec if suffix == ".onnx" else _sibling_onnx(spec),
        sha256=sha256_file(spec),
    )


def _sibling_onnx(path: str) -> str | None:
    cand = os.path.splitext(path)[0] + ".onnx"
    return cand if os.path.exists(cand) else None


def _from_folder(folder: str, runtime: str, wanted: tuple[str, ...]) -> Target:
    mpath = os.path.join(folder, "manifest.json")
    if not os.path.exists(mpath):
        raise EdgedetError(f"{folder} is a folder without manifest.json, so not an export artifact")
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise EdgedetError(f"{mpath} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise EdgedetError(f"{mpath} is not a JSON object")
    files = sorted(_listed_files(manifest) or os.listdir(folder))
    chosen = None
    main = manifest.get("model_file")  # the exporter names its primary file
    if isinstance(main, str) and main.lower().endswith(wanted) and os.path.exists(os.path.join(folder, main)):
        chosen = os.path.join(folder, main)
    for suffix in wanted if chosen is None else ():
        hits = [f for f in files if f.lower().endswith(suffix) and os.path.exists(os.path.join(folder, f))]
        if hits:
            chosen = os.path.join(folder, hits[0])
            break
    if chosen is None:
        raise EdgedetError(
            f"artifact {folder} has no {' / '.join(wanted)} file for --runtime {runtime} "
            f"(it holds: {', '.join(files) or 'nothing'})"
        )
    onnx = [f for f in files if f.lower().endswith(".onnx") and os.path.exists(os.path.join(folder, f))]
    _check_sha(folder, manifest, os.path.relpath(chosen, folder))
    return Target(
        spec=folder,
        path=chosen,
        kind="file",
        onnx_path=os.path.join(folder, onnx[0]) if onnx else None,
        inputs=_declared_inputs(manifest),
        manifest=manifest,
        sha256=sha256_file(chosen),
    )


def _listed_files(manifest: dict) -> list[str]:
    """File names the manifest lists (as a {name: sha} map or a list of {path|name, sha256})."""
    files = manifest.get("files") or manifest.get("sha256")
    if isinstance(files, dict):
        return [str(k) for k in files]
    if isinstance(files, list):
        return [str(f.get("path") or f.get("name")) for f in files if isinstance(f, dict)]
    return []


def _check_sha(folder: str, manifest: dict, rel: str) -> None:
    files = manifest.get("files") or manifest.get("sha256")
    want = None
    if isinstance(files, dict):
        v = files.get(rel)
        want = v.get("sha256") if isinstance(v, dict) else v
    elif isinstance(files, list):
        for f in files:
            if isinstance(f, dict) and (f.get("path") or f.get("name")) == rel:
                want = f.get("sha256")
    if isinstance(want, str) and len(want) == 64 and sha256_file(os.path.join(folder, rel)) != want:
        raise EdgedetError(
            f"{os.path.join(folder, rel)} does not match the sha256 in manifest.json "
            "(the artifact was modified or is incomplete)"
        )


def _declared_inputs(manifest: dict) -> list[dict] | None:
    raw = manifest.get("inputs")
    if not isinstance(raw, list):
        return None
    out = []
    for i in raw:
        if isinstance(i, dict) and "name" in i and "shape" in i:
            out.append(
                {
                    "name": i["name"],
                    "shape": [d if isinstance(d, int) else None for d in i["shape"]],
                    "dtype": str(i.get("dtype", "float32")),
                }
            )
    return out or None
