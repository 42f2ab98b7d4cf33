"""Where an exported model's weights come from: a checkpoint, or the seeded initialisation.

A checkpoint is either an edgedet training checkpoint (a dict whose "model" entry is the
state dict, `edgedet.training.checkpoint`) or a plain state dict saved with `torch.save`.
It is read with `weights_only=True`; anything unreadable is one clear EdgedetError.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgedet.errors import EdgedetError
from edgedet.exporters.artifact import sha256_file


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The model state dict inside a checkpoint file (DDP's "module." prefix removed) and the
    constructor options the checkpoint records: a detection training checkpoint keeps its
    model options (preset, decoder sizes, backbone options) and class count, without which
    the model built for export would not fit its weights; {} for anything else."""
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated/corrupt file, or pickled objects weights_only refuses
        raise EdgedetError(f"cannot read checkpoint {p}: {_load_failure(p, e)}") from None
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
    import zipfile

    text = str(err)
    if "Unsupported global" in text:
        name = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
        return f"it holds pickled Python objects ({name[:80]}) that weights-only loading refuses; save tensors only"
    if not zipfile.is_zipfile(path):
        return "not a torch.save file (corrupt, truncated, or another format)"
    return f"corrupt or truncated torch.save archive ({type(err).__name__})"


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
