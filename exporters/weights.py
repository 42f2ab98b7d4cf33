"""Where an exported model's weights come from: a checkpoint (read by
`edgedet.io.checkpoint.load_model_weights`), or the seeded initialisation."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.io.digest import sha256_file


def num_classes_of(sd: dict[str, torch.Tensor]) -> int | None:
    """Classifier head size stored in a state dict (training may use other than 1000)."""
    w = sd.get("head.weight")
    return int(w.shape[0]) if w is not None and w.dim() == 2 else None


def load_into(model: nn.Module, sd: dict[str, torch.Tensor], path: str | Path) -> None:
    """Strict load; missing/unexpected/mis-shaped keys are one EdgedetError naming a few."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise EdgedetError(f"checkpoint {path} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)


def weights_record(checkpoint: str | Path | None, seed: int) -> dict:
    """The manifest's `weights` entry."""
    if checkpoint is None:
        return {
            "source": "seeded-init",
            "seed": seed,
            "note": "no checkpoint given: the model's initialisation after torch.manual_seed(seed)",
        }
    p = Path(checkpoint)
    return {"source": "checkpoint", "path": str(p.resolve()), "sha256": sha256_file(p)}
