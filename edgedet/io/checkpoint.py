"""Checkpoints: one format for training, search and converted runs.

A checkpoint is a dict of tensors, numbers, strings and lists/dicts of them, so
`torch.load(weights_only=True)` reads it; it carries `checkpoint_version` and is written
atomically (a crash never leaves half a checkpoint where a good one was). The RNG state
inside has one format (`rng_state` / `set_rng_state`). Files written before the merge
(training `checkpoint_version` 1, search `format_version` 1) still load.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedet.errors import EdgedetError
from edgedet.io.atomic import atomic_output

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1
# Search checkpoints written before the one format keyed their version so.
_LEGACY_VERSION_KEYS = ("format_version",)
VERSION_KEYS = ("checkpoint_version", *_LEGACY_VERSION_KEYS)


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU, and CUDA when in use), Python and NumPy, as
    tensors and lists only."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved; older training checkpoints hold only torch (+CUDA)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "python" in state:
        v, inner, gauss = state["python"]
        random.setstate((v, tuple(inner), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, then an atomic rename."""
    body = {k: v for k, v in state.items() if k not in VERSION_KEYS}
    with atomic_output(path) as tmp:
        torch.save({"checkpoint_version": CHECKPOINT_VERSION, **body}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """An edgedet checkpoint (any writer, old or new); anything else is one EdgedetError."""
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"no checkpoint to resume from: {p} does not exist")
    state = load_torch_file(p)
    if not isinstance(state, dict) or not any(state.get(k) == CHECKPOINT_VERSION for k in VERSION_KEYS):
        raise EdgedetError(f"{p} is not an edgedet checkpoint (version {CHECKPOINT_VERSION})")
    return state


def load_torch_file(path: str | Path, safe_globals: Iterable[type] = ()) -> Any:
    """`torch.load(weights_only=True)` on CPU, admitting only `safe_globals` beyond tensors
    and plain containers; a corrupt, truncated or pickled-object file is one EdgedetError."""
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"checkpoint {p} does not exist")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated/corrupt file, or pickled objects weights_only refuses
        raise EdgedetError(f"cannot read checkpoint {p}: {_load_failure(p, e)}") from None


def load_model_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The model state dict inside a checkpoint file (DDP's "module." prefix removed) and the
    constructor options the checkpoint records. Reads an edgedet checkpoint (its "model"
    entry) or a plain state dict; a detection checkpoint also gives its model options
    (preset, decoder sizes, backbone options) and class count, without which the model
    built would not fit its weights; {} for anything else."""
    p = Path(path)
    obj = load_torch_file(p)
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EdgedetError(
            f"{p} holds neither a state dict nor a training checkpoint with a 'model' state dict"
        )
    options: dict = {}
    if isinstance(obj, dict) and obj.get("task") == "detection":
        options = dict(obj.get("model_options") or {})
        if isinstance(obj.get("num_classes"), int):
            options["num_classes"] = obj["num_classes"]
    return {k.removeprefix("module."): v for k, v in sd.items()}, options


def _load_failure(path: Path, err: Exception) -> str:
    """Why torch.load(weights_only=True) failed, in words (torch's own text asks users to
    re-run without weights_only, which is not the fix for a corrupt file)."""
    text = str(err)
    if "Unsupported global" in text:
        name = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
        return f"it holds pickled Python objects ({name[:80]}) that weights-only loading refuses; save tensors only"
    if not zipfile.is_zipfile(path):
        return "not a torch.save file (corrupt, truncated, or another format)"
    return f"corrupt or truncated torch.save archive ({type(err).__name__})"
