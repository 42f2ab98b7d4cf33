"""edgedet's PyTorch CPU op for the quadratic conv (`torch_quadraconv.cpp`), built with
torch.utils.cpp_extension on first use into a cache keyed by torch version, vector ISA and
the sha256 of its sources (the .cpp and the forward kernel it shares with the OpenVINO op,
`quadraconv_tile.hpp`): `$EDGEDET_TORCH_EXT_CACHE` (default `~/.cache/edgedet/torch-ext`)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from edgedet import cpu
from edgedet.errors import EdgedetError
from edgedet.kernels.openvino_extension import isa_flags

SOURCE = "torch_quadraconv.cpp"
HEADERS = ("quadraconv_tile.hpp",)  # local includes of SOURCE: part of the cache key
_MODULE = None
_CHECKED = False


def _source() -> Path:
    return Path(__file__).resolve().parent / SOURCE


def build_dir() -> Path:
    import torch

    env = os.environ.get("EDGEDET_TORCH_EXT_CACHE", "").strip()
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "edgedet" / "torch-ext"
    h = hashlib.sha256()
    for path in (_source(), *(_source().parent / name for name in HEADERS)):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    sha = h.hexdigest()[:12]
    return root / f"{torch.__version__.split('+')[0]}-{cpu.vector_isa().best}-{sha}"


def load():
    """The compiled module (forward, backward), built now if missing (about a minute)."""
    global _MODULE
    if _MODULE is None:
        from torch.utils import cpp_extension

        if shutil.which("c++") is None and shutil.which("g++") is None:
            raise EdgedetError("building the PyTorch quadratic-conv op needs a C++ compiler (apt-get install g++)")
        folder = build_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = "edgedet_quadraconv_" + folder.name.rsplit("-", 1)[-1]
        _MODULE = cpp_extension.load(name=name, sources=[str(_source())], build_directory=str(folder),
                                     extra_cflags=["-O3", *isa_flags(cpu.vector_isa().best)], verbose=False)
    return _MODULE


def built() -> bool:
    """True when the op is loaded or its library is in the cache (never starts a build)."""
    return _MODULE is not None or any(build_dir().glob("edgedet_quadraconv_*.so"))


def available():
    """The op when it is loaded or already built (checked once per process; never builds), else
    None. `EDGEDET_TORCH_OP=0` turns it off."""
    global _CHECKED
    if _MODULE is not None:
        return _MODULE
    if _CHECKED or os.environ.get("EDGEDET_TORCH_OP", "1").strip() == "0":
        return None
    _CHECKED = True
    try:
        return load() if built() else None
    except Exception:  # a stale or broken cache entry: fall back to the reference ops
        return None
