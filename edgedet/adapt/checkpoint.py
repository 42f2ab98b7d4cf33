"""MABN checkpoints: an ordinary classifier checkpoint ("model" is the classifier's state
dict, so `edgedet export --checkpoint` reads it as is) plus the auxiliary head ("aux"), the
recipe ("mabn") and the input normalisation. An adapted checkpoint has no "aux" and says
how it was adapted ("adapted")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgedet import models
from edgedet.adapt.aux_heads import AuxNet, make_aux_head
from edgedet.adapt.config import MabnConfig
from edgedet.data.synthetic import MEAN, STD
from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import load_checkpoint, save_checkpoint

KIND = "mabn"


def save_mabn(path: str | Path, model: AuxNet, cfg: MabnConfig, source_domains: list[str]) -> None:
    save_checkpoint(path, {
        "kind": KIND, "task": "classification", "model_name": cfg.model,
        "num_classes": int(model.net.head.out_features), "img_size": cfg.img_size,
        "normalisation": {"mean": [MEAN] * 3, "std": [STD] * 3}, "source_domains": list(source_domains),
        "mabn": cfg.to_dict(), "aux_kind": cfg.aux,
        "model": model.net.state_dict(), "aux": model.aux.state_dict(),
    })


def load_mabn(path: str | Path, model_name: str) -> tuple[AuxNet, dict[str, Any]]:
    """The classifier with its auxiliary head, and the checkpoint's other entries."""
    p = Path(path)
    if not p.is_file():
        raise EdgedetError(f"--checkpoint {p}: no such file")
    state = load_checkpoint(p)
    if state.get("kind") != KIND:
        raise EdgedetError(f"--checkpoint {p} is not an MABN checkpoint (it has no auxiliary head); "
                           "`edgedet reproduce mabn --out DIR` writes them")
    if "aux" not in state:
        raise EdgedetError(f"--checkpoint {p} was already adapted (its auxiliary head was dropped); "
                           "adapt the MABN checkpoint it came from")
    if state["model_name"] != model_name:
        raise EdgedetError(f"--checkpoint {p} holds a '{state['model_name']}', not a '{model_name}'")
    cfg = MabnConfig.from_dict(state["mabn"])
    net = models.create(model_name, num_classes=int(state["num_classes"]))
    try:
        net.load_state_dict(state["model"])
        net.eval()  # the width probe below must not move the loaded BN running statistics
        with torch.no_grad():
            dim = net.embed(torch.zeros(2, 3, cfg.img_size, cfg.img_size)).shape[1]
        aux = make_aux_head(state["aux_kind"], dim)
        aux.load_state_dict(state["aux"])
    except (RuntimeError, ValueError) as e:
        raise EdgedetError(f"--checkpoint {p} does not fit {model_name}: {str(e).splitlines()[0]}") from None
    return AuxNet(net, aux).eval(), state


def save_adapted(path: str | Path, net: torch.nn.Module, state: dict[str, Any], adapted: dict[str, Any]) -> None:
    """The adapted classifier alone (auxiliary head dropped), atomically."""
    out = {k: v for k, v in state.items() if k not in ("aux", "model")}
    save_checkpoint(path, {**out, "model": net.state_dict(), "adapted": adapted})
