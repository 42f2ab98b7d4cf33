"""Official Plain-DETR checkpoints (github.com/impiga/Plain-DETR) → edgedet's PlainDETR.

Supported: the `global_rpe_decomp` decoder (BoxRPB, `linear` or `abs_log8`), two-stage with
mixed selection and box refinement, pre- or post-norm, one feature level at stride 16 from an
upsampled stride-32 backbone map, any number of proposal levels, with or without reparam
(not stored in the weights: pass it). Converted: input projection, level embedding, the
two-stage proposal layers (enc_output*, pos_trans*, enc_output_proj), all decoder layers,
the final decoder norm, class/box heads and query embeddings; the 2× upsampler when its
shape matches the chosen backbone. Not converted: the SwinV2 backbone (edgedet has no
SwinV2) — the converted model reproduces the official head given the same stride-32
backbone features. Not supported: `global_ape` decoders and single-stage
(`transformer.reference_points`) models.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

from edgedet.errors import EdgedetError

_RULES: list[tuple[str, str]] = [
    (r"^backbone\.0\.upsample\.(\d+)\.ln\.", r"upsample.\1."),
    (r"^backbone\.0\.upsample\.", "upsample."),
    (r"^input_proj\.0\.", "input_proj."),
    (r"^transformer\.level_embed$", "level_embed"),
    (r"^transformer\.enc_output_proj\.(\d+)\.(\d+)\.ln\.", r"enc_output_proj.\1.\2."),
    (r"^transformer\.(enc_output|enc_output_norm|pos_trans|pos_trans_norm|enc_output_proj)\.", r"\1."),
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.cpb_mlp1\.", r"decoder.\1.cross_attn.rpb_x."),
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.cpb_mlp2\.", r"decoder.\1.cross_attn.rpb_y."),
    (r"^transformer\.decoder\.layers\.(\d+)\.", r"decoder.\1."),
    (r"^transformer\.decoder\.final_layer_norm\.", "decoder_norm."),
    (r"^(class_embed|bbox_embed|query_embed)\.", r"\1."),
]
# aliases the official model stores twice (the decoder holds references to the heads)
_ALIASES = re.compile(r"^transformer\.decoder\.(class_embed|bbox_embed)\.")
_BACKBONE = re.compile(r"^backbone\.0\.(net|body)\.")


@dataclass
class Conversion:
    state_dict: dict[str, Tensor]
    config: dict
    skipped: list[str] = field(default_factory=list)  # official keys not converted (backbone)


def official_state_dict(obj) -> dict[str, Tensor]:
    """The model weights of an official checkpoint ({"model": sd, ...} or a bare state dict)."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise EdgedetError("not a Plain-DETR checkpoint: expected a state dict or {'model': state_dict}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def map_key(key: str) -> str | None:
    """Official key → edgedet key (None: not converted)."""
    if _ALIASES.match(key) or _BACKBONE.match(key):
        return None
    for pattern, repl in _RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def infer_config(sd: dict[str, Tensor], proposal_strides: tuple[int, ...] = (8, 16, 32, 64)) -> dict:
    """PlainDETRConfig fields readable from the weights' names and shapes."""
    if "transformer.reference_points.weight" in sd:
        raise EdgedetError("single-stage Plain-DETR checkpoints are not supported (needs --two_stage)")
    if not any(".cross_attn.cpb_mlp1." in k for k in sd):
        raise EdgedetError("this checkpoint has no BoxRPB decoder (cpb_mlp1): only the global_rpe_decomp "
                           "decoder is supported")
    pat = re.compile(r"transformer\.decoder\.layers\.(\d+)\.")
    layers = sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})
    d = sd["transformer.enc_output.weight"].shape[0]
    cfg = {
        "hidden_dim": int(d),
        "dec_layers": len(layers),
        "dim_feedforward": int(sd["transformer.decoder.layers.0.linear1.weight"].shape[0]),
        "rpe_hidden_dim": int(sd["transformer.decoder.layers.0.cross_attn.cpb_mlp1.0.weight"].shape[0]),
        "nheads": int(sd["transformer.decoder.layers.0.cross_attn.cpb_mlp1.2.weight"].shape[0]),
        "num_classes": int(sd["class_embed.0.weight"].shape[0]),
        "norm_type": "pre_norm" if "transformer.decoder.final_layer_norm.weight" in sd else "post_norm",
        "enc_layers": 0,
    }
    cfg["proposal_strides"] = check_proposal_strides(sd, proposal_strides)
    total = int(sd["query_embed.weight"].shape[0])
    cfg["num_queries"] = min(300, total)
    cfg["num_queries_one2many"] = total - cfg["num_queries"]
    return cfg


def _conv_count(sd: dict[str, Tensor], lvl: int) -> int:
    pat = re.compile(rf"transformer\.enc_output_proj\.{lvl}\.\d+\.weight$")
    return sum(1 for k, v in sd.items() if pat.match(k) and v.dim() == 4)


def check_proposal_strides(sd: dict[str, Tensor], strides: tuple[int, ...]) -> list[int]:
    """The official proposal_tgt_strides are not stored; check `strides` against the number
    of (transposed) convolutions each enc_output_proj level holds (|log2(stride/16)|)."""
    has_proj = any(k.startswith("transformer.enc_output_proj.") for k in sd)
    if not has_proj:
        return [16]
    for lvl, s in enumerate(strides):
        want = abs(round(math.log2(s / 16)))
        if _conv_count(sd, lvl) != want:
            raise EdgedetError(f"proposal strides {list(strides)} do not fit the checkpoint enc_output_proj "
                               f"(level {lvl} has {_conv_count(sd, lvl)} convolutions); pass the run's "
                               "--proposal_tgt_strides")
    if _conv_count(sd, len(strides)):
        raise EdgedetError(f"the checkpoint has more proposal levels than {list(strides)}")
    return list(strides)


def convert_official(obj, num_queries: int = 300,
                     proposal_strides: tuple[int, ...] = (8, 16, 32, 64)) -> Conversion:
    """Rename an official state dict; returns the edgedet state dict (head only) and config."""
    sd = official_state_dict(obj)
    cfg = infer_config(sd, proposal_strides)
    total = cfg["num_queries"] + cfg["num_queries_one2many"]
    if not 0 < num_queries <= total:
        raise EdgedetError(f"num_queries {num_queries} must be in 1..{total} (rows of query_embed)")
    cfg["num_queries"], cfg["num_queries_one2many"] = num_queries, total - num_queries
    out, skipped = {}, []
    for k, v in sd.items():
        new = map_key(k)
        if new is None:
            if not _ALIASES.match(k):
                skipped.append(k)
            continue
        if new == "level_embed" and v.shape[0] != 1:
            raise EdgedetError(f"{v.shape[0]} feature levels: only single-scale Plain-DETR is supported")
        out[new] = v.detach().clone()
    return Conversion(out, cfg, skipped)


def load_converted(model: torch.nn.Module, conv: Conversion) -> list[str]:
    """Load into a PlainDETR; returns the converted keys left out because their shape does
    not fit this model (e.g. the upsampler for a different backbone width). Every other head
    parameter must be present."""
    own = model.state_dict()
    fitted = {k: v for k, v in conv.state_dict.items() if k in own and own[k].shape == v.shape}
    unfit = sorted(set(conv.state_dict) - set(fitted))
    unexpected = [k for k in unfit if k not in own]
    if unexpected:
        raise EdgedetError(f"converted keys with no place in this model: {', '.join(unexpected[:5])}")
    bad = [k for k in unfit if not k.startswith("upsample.")]
    if bad:
        raise EdgedetError(f"shape mismatch for {', '.join(bad[:5])}: the model's options differ from "
                           "the checkpoint's")
    missing = [k for k in own if k not in fitted and not k.startswith(("backbone.", "upsample.", "encoder."))]
    if missing:
        raise EdgedetError(f"checkpoint lacks {', '.join(missing[:5])}")
    model.load_state_dict(fitted, strict=False)
    return unfit
