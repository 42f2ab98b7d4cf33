"""Search checkpoints: one file per search, rewritten atomically at every epoch end.

Everything needed to continue bit-for-bit: supernet weights, α, both optimisers, the
weight LR schedule, the path-sampling generator, the global RNG states, the epoch (the
data order of an epoch is a pure function of seed and epoch, so the epoch *is* the data
order state), whether the warm-up is over, the history so far, and the config it belongs
to. Only tensors and plain containers are stored, so `torch.load(weights_only=True)` works.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedet.atomic import atomic_output
from edgedet.errors import EdgedetError

CHECKPOINT_NAME = "search.ckpt"
FORMAT_VERSION = 1


def rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def restore_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    v, state, gauss = s["python"]
    random.setstate((v, tuple(state), gauss))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, then rename over the old checkpoint."""
    with atomic_output(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise EdgedetError(f"{p}: not a readable search checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise EdgedetError(f"{p}: not a search checkpoint of format {FORMAT_VERSION}")
    return state
