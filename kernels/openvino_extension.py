"""edgedet's OpenVINO CPU extension library (ops `edgedet.QuadraConv` and
`edgedet.BoxRPBAttention`, fused, fp32).

The C++ sources (`ov_extension.cpp`, `ov_quadraconv.cpp`, `ov_boxrpb.cpp`, the shared op
header `ov_op_common.hpp`, `CMakeLists.txt`, shipped in this package) are built
with CMake against the headers and CMake config of the installed `openvino` wheel, on first
use, into a cache keyed by OpenVINO version, vector ISA and the sources' sha256:
`$EDGEDET_OV_EXT_CACHE` (default `~/.cache/edgedet/ov-ext`)/`<ov version>-<isa>-<sha12>/`.
One library serves both the ONNX frontend (maps the custom node to the op) and `ov.Core`
(reads IRs holding it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgedet import cpu
from edgedet.errors import EdgedetError
from edgedet.io.atomic import atomic_output

# Everything the build reads: a header the .cpp files include belongs here too, so that an
# edit to it changes the cache key (tests check every local #include is listed).
SOURCES = ("ov_extension.cpp", "ov_quadraconv.cpp", "ov_boxrpb.cpp", "ov_op_common.hpp", "quadraconv_tile.hpp",
           "CMakeLists.txt")
LIBRARY = "libedgedet_ov_ext.so"
OPS = ("edgedet.QuadraConv", "edgedet.BoxRPBAttention")
IR_OPSET = 'version="edgedet"'  # how an IR layer of the extension's opset reads in model.xml
_ISA_FLAGS = {  # edgedet ISA level → compiler flags for the kernels (x86; Arm builds use the default)
    "sse41": ["-msse4.1"],
    "avx": ["-mavx"],
    "avx2": ["-mavx2", "-mfma"],
    "avx512f": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"],
}
_ISA_FLAGS["avx512_bf16"] = _ISA_FLAGS["amx"] = _ISA_FLAGS["avx512f"]


@dataclass(frozen=True)
class ExtensionBuild:
    """A built library and what it was built from (recorded in artifact manifests)."""

    library: Path
    openvino: str
    isa: str
    sources_sha256: str

    def to_json(self) -> dict:
        return {"library": self.library.name, "ops": list(OPS), "openvino": self.openvino, "isa": self.isa,
                "sources_sha256": self.sources_sha256}


def isa_flags(isa: str) -> list[str]:
    """Compiler flags for edgedet's ISA level (empty: the compiler's default)."""
    return list(_ISA_FLAGS.get(isa, []))


def source_dir() -> Path:
    return Path(__file__).resolve().parent


def sources_sha256() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (source_dir() / name).read_bytes())
    return h.hexdigest()


def cache_root() -> Path:
    env = os.environ.get("EDGEDET_OV_EXT_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgedet" / "ov-ext"


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise EdgedetError("the openvino package is not installed (pip install openvino)") from None
    return ov


def build(quiet: bool = True) -> ExtensionBuild:
    """The cached library for this OpenVINO + ISA + sources, built now if missing (≈ 15 s)."""
    ov = _openvino()
    version = ov.__version__.split("-")[0]
    isa = cpu.vector_isa().best
    sha = sources_sha256()
    folder = cache_root() / f"{version}-{isa}-{sha[:12]}"
    lib = folder / LIBRARY
    if lib.exists():
        return ExtensionBuild(lib, version, isa, sha)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:  # one builder at a time; others wait, then reuse
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not lib.exists():
            _cmake_build(Path(ov.__file__).parent / "cmake", _ISA_FLAGS.get(isa, []), folder, quiet)
    return ExtensionBuild(lib, version, isa, sha)


def _cmake_build(ov_cmake: Path, flags: list[str], folder: Path, quiet: bool) -> None:
    missing = [t for t in ("cmake", "c++") if shutil.which(t) is None]
    if missing:
        raise EdgedetError(f"building the OpenVINO extension needs {' and '.join(missing)} on PATH "
                           "(apt-get install cmake g++), or export with --decompose")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        steps = [
            ["cmake", "-S", str(source_dir()), "-B", tmp, *gen, "-DCMAKE_BUILD_TYPE=Release",
             f"-DOpenVINO_DIR={ov_cmake}", f"-DEDGEDET_ISA_FLAGS={';'.join(flags)}"],
            ["cmake", "--build", tmp],
        ]
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=quiet, text=True)
            if r.returncode != 0:
                tail = (r.stderr or r.stdout or "").strip().splitlines()[-1:] if quiet else []
                raise EdgedetError(f"building the OpenVINO extension failed ({cmd[1]}): {' '.join(tail)[:300]}")
        built = Path(tmp) / LIBRARY
        with atomic_output(folder / LIBRARY) as dst:
            shutil.copy2(built, dst)


def ir_needs_extension(xml_path: Path) -> bool:
    """True when an OpenVINO IR holds a layer of the edgedet opset."""
    try:
        return IR_OPSET in Path(xml_path).read_text(errors="replace")
    except OSError:
        return False


def library_for_ir(xml_path: Path) -> Path | None:
    """The library an IR needs: the artifact's own copy when its manifest says it was built
    for this OpenVINO and ISA, else the cached build from this package's sources; None when
    the IR holds no edgedet op."""
    import json

    xml_path = Path(xml_path)
    if not ir_needs_extension(xml_path):
        return None
    try:
        manifest = json.loads((xml_path.parent / "manifest.json").read_text())
        records = manifest.get("runtime", {}).get("extensions", []) or []
    except (OSError, ValueError, AttributeError):
        records = []
    ov, isa = _openvino(), cpu.vector_isa().best
    for rec in records:
        lib = xml_path.parent / str(rec.get("library", ""))
        if lib.is_file() and rec.get("openvino") == ov.__version__.split("-")[0] and rec.get("isa") == isa:
            return lib
    return build().library


_PINNED: dict[str, object] = {}


def pin(library: Path) -> str:
    """Keep `library` loaded for the life of the process and return its path as a string.

    Models hold op objects whose code lives in the library; when the last Core or frontend
    that loaded it goes away first, OpenVINO unloads it and the model's destructor crashes.
    A Core kept here holds one more reference, so no destruction order can do that."""
    key = str(Path(library).resolve())
    if key not in _PINNED:
        core = _openvino().Core()
        core.add_extension(key)
        _PINNED[key] = core
    return key


def core_for(xml_path: Path | None = None, library: Path | None = None):
    """An `ov.Core` with the extension added when the IR needs it (or `library` is given)."""
    ov = _openvino()
    core = ov.Core()
    if library is None and xml_path is not None:
        library = library_for_ir(xml_path)
    if library is not None:
        core.add_extension(pin(library))
    return core
