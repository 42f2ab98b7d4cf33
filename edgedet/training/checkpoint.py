"""Checkpoints that `torch.load(weights_only=True)` can read: only tensors, numbers,
strings and lists/dicts of them. Written to a temp file and renamed, so a crash never
leaves a half-written checkpoint where a good one was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgedet.atomic import atomic_output
from edgedet.errors import EdgedetError

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Torch's global RNG states as tensors (CPU, and CUDA when present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, then an atomic rename."""
    with atomic_output(path) as tmp:
        torch.save({"checkpoint_version": CHECKPOINT_VERSION, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True; a missing or unreadable file is a clear EdgedetError."""
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"no checkpoint to resume from: {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or objects that weights_only refuses
        raise EdgedetError(f"cannot load checkpoint {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise EdgedetError(f"{p} is not an edgedet checkpoint (version {CHECKPOINT_VERSION})")
    return state
