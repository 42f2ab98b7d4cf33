"""Official ASAG checkpoints (github.com/iSEE-Laboratory/ASAG, ASAG-S) → edgedet names.

`convert_asag_state_dict(sd)` renames the parts edgedet implements: the FPN levels C3–C5
(the official neck also has a C2 level, which edgedet's stride-8/16/32 FPN drops), the
anchor generator, the query initialiser (official "rpn") and the Sparse R-CNN decoder heads
(the last head is the one used at inference → `decoder.0`; the others are the parallel
auxiliary decoders). Backbone weights (ResNet / Swin) are not mapped. Load the result into
`create("asag-<backbone>", preset="paper", num_classes=80)` with strict=False, or check it
with `unmapped_asag_keys`. Not supported: the AdaMixer decoder (ASAG-A), query patterns
(num_query_pattern > 1) and denoising-only parameters (none are stored).
"""

from __future__ import annotations

import re

from torch import Tensor

from edgedet.errors import EdgedetError

_ANCHOR = (
    (r"anchor_generator\.compress\.(\d+)\.(0|2)\.", r"anchor_generator.compress.\1.\2."),
    (r"anchor_generator\.P6\.", "anchor_generator.p6."),
    (r"anchor_generator\.layernorm\.(\d+)\.", r"anchor_generator.token_norm.\1."),
    (r"anchor_generator\.pos_embedding\.(\d+)\.", r"anchor_generator.pos_embed.\1."),
    (r"anchor_generator\.proj_all\.layers\.(\d+)\.", r"anchor_generator.coarse_head.layers.\1."),
    (r"anchor_generator\.proj_patch\.layers\.(\d+)\.", r"anchor_generator.fine_head.layers.\1."),
)
_RPN = (
    (r"rpn\.roi\.", "query_init.roi."),
    (r"rpn\.tokens_norm1\.", "query_init.norm_roi."),
    (r"rpn\.tokens_norm2\.", "query_init.norm_ffn."),
    (r"rpn\.tokens_norm3\.", "query_init.norm_attn."),
    (r"rpn\.tokens_proj\.layers\.(\d+)\.", r"query_init.ffn.layers.\1."),
    (r"rpn\.attn\.", "query_init.attn."),
    (r"rpn\.iof_tau$", "query_init.iof_tau"),
    (r"rpn\.cls_fcs\.(\d+)\.", r"query_init.cls_branch.\1."),
    (r"rpn\.reg_fcs\.(\d+)\.", r"query_init.reg_branch.\1."),
    (r"rpn\.fc_cls\.", "query_init.fc_cls."),
    (r"rpn\.fc_reg\.", "query_init.fc_reg."),
)
_HEAD = (
    (r"cls_module\.(\d+)\.", r"cls_branch.\1."),
    (r"reg_module\.(\d+)\.", r"reg_branch.\1."),
)
_HEAD_KEEP = re.compile(
    r"(self_attn\.|inst_interact\.(dynamic_layer|norm[123]|out_layer)\.|linear[12]\.|norm[123]\.|"
    r"class_logits\.|bboxes_delta\.)"
)
_NECK = re.compile(r"neck\.(inner|layer)_blocks\.(\d+)\.(?:0\.)?(weight|bias)$")


def _unwrap(sd: dict) -> dict[str, Tensor]:
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}


def _head_target(index: int, n_heads: int) -> str:
    return "decoder.0" if index == n_heads - 1 else f"aux_decoders.{index}"


def convert_asag_state_dict(sd: dict) -> dict[str, Tensor]:
    """Official ASAG-S state dict (optionally wrapped in {"model": ...}, DDP "module."
    prefixes allowed) → edgedet ASAG state dict of the mapped parts."""
    sd = _unwrap(sd)
    if any(
        k.startswith("decoder.") and ("adaptive_mixing" in k or "sampling_offset" in k) for k in sd
    ) or any(k.startswith("decoder.decoder_stages") for k in sd):
        raise EdgedetError(
            "this is an ASAG-A (AdaMixer decoder) checkpoint; edgedet implements ASAG-S "
            "(Sparse R-CNN dynamic decoder) only"
        )
    if "rpn.pattern.weight" in sd:
        raise EdgedetError(
            "checkpoint uses query patterns (num_query_pattern > 1), which edgedet does not implement"
        )
    if not any(k.startswith("anchor_generator.") for k in sd):
        raise EdgedetError("not an ASAG checkpoint: no anchor_generator.* parameters")
    heads = sorted({int(m.group(1)) for k in sd if (m := re.match(r"decoder\.head_series\.(\d+)\.", k))})
    n_heads = len(heads)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        new = _rename(key, n_heads)
        if new is not None:
            out[new] = value
    if "decoder.decoder_embedding.weight" in sd:
        emb = sd["decoder.decoder_embedding.weight"]
        for i in range(emb.shape[0]):
            out[f"{_head_target(i, n_heads)}.embed"] = emb[i].clone()
    return out


def _rename(key: str, n_heads: int) -> str | None:
    if m := _NECK.match(key):
        kind, level, param = m.groups()
        if int(level) == 0:  # the C2 level: not part of edgedet's FPN
            return None
        return f"fpn.{'lateral' if kind == 'inner' else 'output'}.{int(level) - 1}.{param}"
    for pat, rep in _ANCHOR + _RPN:
        if re.match(pat, key):
            return re.sub(pat, rep, key, count=1)
    if m := re.match(r"decoder\.head_series\.(\d+)\.(.+)$", key):
        rest = m.group(2)
        for pat, rep in _HEAD:
            if re.match(pat, rest):
                return f"{_head_target(int(m.group(1)), n_heads)}.{re.sub(pat, rep, rest, count=1)}"
        if _HEAD_KEEP.match(rest):
            return f"{_head_target(int(m.group(1)), n_heads)}.{rest}"
    return None


def unmapped_asag_keys(sd: dict) -> list[str]:
    """Official keys that `convert_asag_state_dict` leaves out (backbone, the C2 FPN level, …)."""
    sd = _unwrap(sd)
    n_heads = len({int(m.group(1)) for k in sd if (m := re.match(r"decoder\.head_series\.(\d+)\.", k))})
    return [k for k in sd if k != "decoder.decoder_embedding.weight" and _rename(k, n_heads) is None]
