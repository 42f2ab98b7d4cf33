"""Plain-DETR: a single-scale, global-attention DETR with BoxRPB cross-attention.

Pipeline (one feature map, stride 16 as the paper; `memory_stride` 8 for small images):
  backbone stage-4 map (stride 32) → 2× transposed conv(s) to the memory stride (+ optionally
  the backbone's own map at that stride, `stride16_lateral`) → 1×1 conv + GroupNorm (`input_proj`)
  → sine position embedding (+ a level embedding) → optional transformer encoder layers
  → two-stage proposals: a grid of anchor boxes on `proposal_strides` maps projected from the
    memory, scored (class 0 = objectness) and refined by the last class/box heads; the top-k
    become the decoder's reference boxes, their sine embedding its query positions, and a
    learned embedding its content queries ("mixed selection"); optionally (`distinct_queries_iou`)
    the one-to-one queries' proposals first pass a class-agnostic NMS, so that no two of them
    start on the same object (DDQ-DETR's distinct queries; static shapes, exports as NMS)
  → `dec_layers` decoder layers (self-attention, BoxRPB cross-attention, FFN; pre- or
    post-norm), each refining the boxes: reparameterised deltas in pixels
    (cx = cx' + Δx·w', w = w'·exp(Δw)) or, with reparam=False, sigmoid-space offsets
  → look-forward-twice: layer l's box keeps the gradient path through layer l−1's box
  → hybrid matching: in training, extra queries (not attending to the one-to-one queries)
    are matched one-to-many against targets repeated k times.
Outputs follow `edgedet.models.set_criterion`; boxes are normalised cxcywh relative to each
image's unpadded size. Eval mode returns only pred_logits / pred_boxes and has no
data-dependent Python control flow, so it traces for export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.errors import EdgedetError
from edgedet.models.layers import MLP, LayerNorm2d, box_sine_embedding, sine_position_embedding
from edgedet.models.matcher import HungarianMatcher
from edgedet.models.plain_detr_transformer import DecoderLayer, EncoderLayer
from edgedet.models.registry import create
from edgedet.models.set_criterion import SetCriterion
from edgedet.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid
from edgedet.ops.nms import fixed_size_nms

WH_RATIO_CLIP = 16 / 1000


@dataclass
class PlainDETRConfig:
    num_classes: int = 80
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 1  # the official model has none (its Swin backbone attends globally)
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.0
    num_queries: int = 300
    num_queries_one2many: int = 1500
    k_one2many: int = 6
    norm_type: str = "pre_norm"
    rpe_hidden_dim: int = 512
    rpe_type: str = "linear"
    reparam: bool = True
    look_forward_twice: bool = True
    proposal_strides: tuple[int, ...] = (8, 16, 32, 64)
    proposal_min_size: float = 50.0  # reparam: proposal side (px) on the finest proposal level
    # add the backbone's own map at the memory stride (1×1 conv) to the upsampled one; the name
    # dates from when the memory stride was always 16
    stride16_lateral: bool = False
    memory_stride: int = 16  # the single feature map's stride (the paper's 16; 8 keeps small images' detail)
    # one-to-one queries from proposals de-duplicated by class-agnostic NMS at this IoU (DDQ's
    # distinct queries); None: plain top-k, as the paper
    distinct_queries_iou: float | None = None
    loss_weights: dict = field(default_factory=lambda: {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["proposal_strides"] = list(self.proposal_strides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PlainDETRConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "proposal_strides" in kw:
            kw["proposal_strides"] = tuple(kw["proposal_strides"])
        return cls(**kw)


# CPU proxy used for the synthetic-set acceptance run (small images, few queries).
CPU_PRESET = dict(hidden_dim=128, nheads=4, enc_layers=1, dec_layers=6, dim_feedforward=512,
                  num_queries=50, num_queries_one2many=150, k_one2many=3, rpe_hidden_dim=128,
                  proposal_strides=(8, 16, 32), proposal_min_size=16.0)


def apply_deltas(boxes: Tensor, deltas: Tensor, max_hw: Tensor | None) -> Tensor:
    """Reparameterised refinement in pixels: cx = cx' + Δx·w', w = w'·exp(Δw) (Δw clipped to
    |log(16/1000)|), then corners clipped to the image (max_hw (B,1,2) = valid h, w)."""
    ratio = abs(math.log(WH_RATIO_CLIP))
    cxy = boxes[..., :2] + boxes[..., 2:] * deltas[..., :2]
    wh = boxes[..., 2:] * deltas[..., 2:].clamp(min=-ratio, max=ratio).exp()
    xyxy = torch.cat([cxy - 0.5 * wh, cxy + 0.5 * wh], dim=-1)
    if max_hw is not None:
        hi = torch.cat([max_hw.flip(-1), max_hw.flip(-1)], dim=-1)  # w, h, w, h
        xyxy = torch.minimum(xyxy.clamp(min=0), hi)
    return box_xyxy_to_cxcywh(xyxy)


def _upsampler(channels: int, factor: int) -> tuple[nn.Module, int]:
    """log2(factor) 2× transposed convs, channels halving each time (LN + GELU between)."""
    steps = int(round(math.log2(factor)))
    if steps == 0:
        return nn.Identity(), channels
    layers: list[nn.Module] = []
    for i in range(steps):
        layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
        channels //= 2
        if i < steps - 1:
            layers += [LayerNorm2d(channels, eps=1e-5), nn.GELU()]
    return nn.Sequential(*layers), channels


def _level_projection(d: int, stride: int, in_stride: int) -> nn.Module:
    """Memory (stride `in_stride`) → a proposal level at `stride` (official enc_output_proj)."""
    if stride == in_stride:
        return nn.Identity()
    steps = int(round(abs(math.log2(stride / in_stride))))
    conv = nn.Conv2d if stride > in_stride else nn.ConvTranspose2d
    layers: list[nn.Module] = []
    for _ in range(steps - 1):
        layers += [conv(d, d, kernel_size=2, stride=2), LayerNorm2d(d, eps=1e-5), nn.GELU()]
    layers.append(conv(d, d, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class PlainDETR(nn.Module):
    """Plain-DETR over any edgedet backbone that has `forward_features` (stride-32 last map)."""

    def __init__(self, backbone: nn.Module, cfg: PlainDETRConfig):
        super().__init__()
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "feature_channels"):
            raise EdgedetError("Plain-DETR needs a backbone with forward_features / feature_channels")
        if cfg.norm_type not in ("pre_norm", "post_norm"):
            raise EdgedetError(f"norm_type must be pre_norm or post_norm, got {cfg.norm_type!r}")
        self.cfg = cfg
        self.stride = cfg.memory_stride
        d = cfg.hidden_dim
        self.backbone = backbone
        last_stride = backbone.feature_strides[-1]
        if self.stride not in (4, 8, 16, 32) or last_stride < self.stride:
            raise EdgedetError(f"memory_stride must be 4, 8, 16 or 32 and no finer than the backbone's last "
                               f"stride {last_stride}, got {self.stride}")
        self.upsample, up_ch = _upsampler(backbone.feature_channels[-1], last_stride // self.stride)
        self.lateral = None
        if cfg.stride16_lateral:
            if self.stride not in backbone.feature_strides:
                raise EdgedetError(f"stride16_lateral needs a backbone with a stride-{self.stride} stage")
            self.lateral_index = list(backbone.feature_strides).index(self.stride)
            self.lateral = nn.Conv2d(backbone.feature_channels[self.lateral_index], up_ch, kernel_size=1)
        iou = cfg.distinct_queries_iou
        if iou is not None and not 0.0 < iou < 1.0:
            raise EdgedetError(f"distinct_queries_iou must be between 0 and 1 (exclusive), got {iou}")
        groups = math.gcd(32, d)
        self.input_proj = nn.Sequential(nn.Conv2d(up_ch, d, kernel_size=1), nn.GroupNorm(groups, d))
        self.level_embed = nn.Parameter(torch.randn(1, d))
        self.encoder = nn.ModuleList(
            EncoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.norm_type)
            for _ in range(cfg.enc_layers))
        self.enc_output, self.enc_output_norm = nn.Linear(d, d), nn.LayerNorm(d)
        self.pos_trans, self.pos_trans_norm = nn.Linear(2 * d, 2 * d), nn.LayerNorm(2 * d)
        self.enc_output_proj = nn.ModuleList(
            _level_projection(d, s, self.stride) for s in cfg.proposal_strides)
        self.query_embed = nn.Embedding(cfg.num_queries + cfg.num_queries_one2many, d)
        self.decoder = nn.ModuleList(
            DecoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.norm_type, cfg.rpe_hidden_dim,
                         cfg.rpe_type, self.stride) for _ in range(cfg.dec_layers))
        self.decoder_norm = nn.LayerNorm(d) if cfg.norm_type == "pre_norm" else nn.Identity()
        # heads 0..L−1 refine the decoder layers; head L scores and refines the proposals
        self.class_embed = nn.ModuleList(nn.Linear(d, cfg.num_classes) for _ in range(cfg.dec_layers + 1))
        self.bbox_embed = nn.ModuleList(MLP([d, d, d, 4]) for _ in range(cfg.dec_layers + 1))
        self.criterion = SetCriterion(cfg.num_classes, HungarianMatcher(), dict(cfg.loss_weights),
                                      one2many_k=cfg.k_one2many)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if not name.startswith("backbone.") and p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.decoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        prior = -math.log((1 - 0.01) / 0.01)
        for head in self.class_embed:
            nn.init.constant_(head.bias, prior)
        for head in self.bbox_embed:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor, masks: Tensor | None = None) -> dict:
        """images (B,3,H,W), masks (B,H,W) True on padding (None: no padding)."""
        cfg = self.cfg
        b, _, img_h, img_w = images.shape
        feats = self.backbone.forward_features(images)
        x = self.upsample(feats[-1])
        if self.lateral is not None:  # pad or crop to the upsampled map (larger when sizes are not multiples of 32)
            f = feats[self.lateral_index]
            x = x + self.lateral(F.pad(f, (0, x.shape[3] - f.shape[3], 0, x.shape[2] - f.shape[2])))
        x = self.input_proj(x)
        h, w = int(x.shape[2]), int(x.shape[3])
        if masks is None:
            fmask = torch.zeros(b, h, w, dtype=torch.bool, device=x.device)
            img_hw = torch.tensor([img_h, img_w], dtype=x.dtype, device=x.device).expand(b, 2)
        else:
            fmask = F.interpolate(masks[None].float(), size=(h, w))[0].to(torch.bool)
            img_hw = torch.stack([(~masks[:, :, 0]).sum(1), (~masks[:, 0, :]).sum(1)], -1).to(x.dtype)
        pos = sine_position_embedding(fmask, cfg.hidden_dim // 2).to(x.dtype)
        src = x.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2) + self.level_embed[None]
        key_mask = fmask.flatten(1) if masks is not None else None
        for layer in self.encoder:
            src = layer(src, pos, key_mask)

        nq = cfg.num_queries + (cfg.num_queries_one2many if self.training else 0)
        enc_logits, enc_boxes, ref = self._proposals(src, fmask, (h, w), img_hw, nq)
        query_pos = self.pos_trans_norm(self.pos_trans(box_sine_embedding(ref, cfg.hidden_dim // 2)))
        query_pos = query_pos[..., : cfg.hidden_dim]
        tgt = self.query_embed.weight[:nq].unsqueeze(0).repeat(b, 1, 1)  # a copy: no view of a parameter
        attn_mask = self._hybrid_mask(nq, x.device) if self.training and cfg.num_queries_one2many else None

        scale = self._rpb_scale(fmask, h, w, img_hw)
        logits_all, boxes_all = [], []
        base = ref
        for lvl, layer in enumerate(self.decoder):
            tgt = layer(tgt, query_pos, ref * scale, src, pos, (h, w), key_mask, attn_mask)
            hs = self.decoder_norm(tgt)
            delta = self.bbox_embed[lvl](hs)
            new_ref = self._refine(ref, delta, img_hw)
            box = self._refine(base, delta, img_hw) if cfg.look_forward_twice else new_ref
            logits_all.append(self.class_embed[lvl](hs))
            boxes_all.append(self._normalise(box, img_hw))
            base = new_ref if cfg.look_forward_twice else new_ref.detach()
            ref = new_ref.detach()

        q1 = cfg.num_queries
        out = {"pred_logits": logits_all[-1][:, :q1], "pred_boxes": boxes_all[-1][:, :q1]}
        if self.training:
            out["aux_outputs"] = [{"pred_logits": lg[:, :q1], "pred_boxes": bx[:, :q1]}
                                  for lg, bx in zip(logits_all[:-1], boxes_all[:-1], strict=True)]
            out["enc_outputs"] = {"pred_logits": enc_logits, "pred_boxes": enc_boxes}
            if cfg.num_queries_one2many:
                out["one2many"] = {
                    "pred_logits": logits_all[-1][:, q1:], "pred_boxes": boxes_all[-1][:, q1:],
                    "aux_outputs": [{"pred_logits": lg[:, q1:], "pred_boxes": bx[:, q1:]}
                                    for lg, bx in zip(logits_all[:-1], boxes_all[:-1], strict=True)]}
        return out

    def loss(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        return self.criterion(outputs, targets)

    def postprocess(self, outputs: dict, target_sizes: Tensor, top_k: int = 100) -> dict[str, Tensor]:
        return postprocess(outputs, target_sizes, top_k)

    # ------------------------------------------------------------------ pieces
    def _refine(self, ref: Tensor, delta: Tensor, img_hw: Tensor) -> Tensor:
        if self.cfg.reparam:
            return apply_deltas(ref, delta, img_hw[:, None, :])
        return (delta + inverse_sigmoid(ref)).sigmoid()

    def _normalise(self, boxes: Tensor, img_hw: Tensor) -> Tensor:
        if not self.cfg.reparam:
            return boxes
        wh = img_hw.flip(-1)
        return boxes / torch.cat([wh, wh], -1)[:, None, :]

    def _rpb_scale(self, fmask: Tensor, h: int, w: int, img_hw: Tensor) -> Tensor:
        """Multiplier turning reference boxes into boxes normalised to the padded feature
        extent (what BoxRPB takes): 1/(W·stride) for pixels, the valid ratio for fractions."""
        if self.cfg.reparam:
            ext = torch.tensor([w * self.stride, h * self.stride], dtype=img_hw.dtype, device=img_hw.device)
            return (1.0 / torch.cat([ext, ext]))[None, None, :]
        vr = torch.stack([(~fmask[:, 0, :]).sum(1) / w, (~fmask[:, :, 0]).sum(1) / h], -1).to(img_hw.dtype)
        return torch.cat([vr, vr], -1)[:, None, :]

    def _hybrid_mask(self, nq: int, device) -> Tensor:
        q1 = self.cfg.num_queries
        m = torch.zeros(nq, nq, dtype=torch.bool, device=device)
        m[q1:, :q1] = True
        m[:q1, q1:] = True
        return m

    def _proposals(self, src: Tensor, fmask: Tensor, hw: tuple[int, int], img_hw: Tensor, k: int):
        """Grid proposals on each proposal level, scored and refined by the last heads; the
        top-k (by the class-0 logit) are the decoder's initial reference boxes (detached)."""
        cfg = self.cfg
        b, _, d = src.shape
        fmap = src.transpose(1, 2).reshape(b, d, hw[0], hw[1])
        mems, props, masks = [], [], []
        for lvl, (proj, stride) in enumerate(zip(self.enc_output_proj, cfg.proposal_strides, strict=True)):
            m = proj(fmap)
            lh, lw = int(m.shape[2]), int(m.shape[3])
            lmask = F.interpolate(fmask[None].float(), size=(lh, lw))[0].to(torch.bool)
            gy, gx = torch.meshgrid(torch.arange(lh, dtype=src.dtype, device=src.device),
                                    torch.arange(lw, dtype=src.dtype, device=src.device), indexing="ij")
            grid = torch.stack([gx, gy], -1)[None].expand(b, -1, -1, -1) + 0.5
            if cfg.reparam:
                centre = grid * stride
                wh = torch.full_like(centre, cfg.proposal_min_size * 2.0 ** lvl)
            else:
                valid = torch.stack([(~lmask[:, 0, :]).sum(1), (~lmask[:, :, 0]).sum(1)], -1).to(src.dtype)
                centre = grid / valid[:, None, None, :]
                wh = torch.full_like(centre, 0.05 * 2.0 ** lvl)
            props.append(torch.cat([centre, wh], -1).reshape(b, -1, 4))
            mems.append(m.flatten(2).transpose(1, 2))
            masks.append(lmask.flatten(1))
        memory, proposals, pmask = torch.cat(mems, 1), torch.cat(props, 1), torch.cat(masks, 1)
        if proposals.shape[1] < k:
            raise EdgedetError(f"only {proposals.shape[1]} proposals for {k} queries: use larger images, "
                               "finer proposal_strides or fewer queries")
        if cfg.reparam:
            lim = torch.cat([img_hw.flip(-1), img_hw.flip(-1)], -1)[:, None, :]
            valid = ((proposals > 0.01 * lim) & (proposals < 0.99 * lim)).all(-1, keepdim=True)
            big = float(max(hw) * self.stride)
            proposals = proposals.masked_fill(pmask[..., None], big).masked_fill(~valid, big)
        else:
            valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
            proposals = inverse_sigmoid(proposals, eps=0.0)
            inf = float("inf")
            proposals = proposals.masked_fill(pmask[..., None], inf).masked_fill(~valid, inf)
        memory = memory.masked_fill(pmask[..., None], 0.0).masked_fill(~valid, 0.0)
        memory = self.enc_output_norm(self.enc_output(memory))
        last = cfg.dec_layers
        enc_logits = self.class_embed[last](memory)
        delta = self.bbox_embed[last](memory)
        if cfg.reparam:
            enc_px = apply_deltas(proposals, delta, img_hw[:, None, :])
            enc_boxes = self._normalise(enc_px, img_hw)
        else:
            enc_px = delta + proposals  # logits
            enc_boxes = enc_px.sigmoid()
        if cfg.distinct_queries_iou is None:
            top = torch.topk(enc_logits[..., 0], k, dim=1)[1]
        else:
            top = self._distinct_top(enc_logits[..., 0].detach(), enc_boxes.detach(), valid[..., 0] & ~pmask, k)
        ref = torch.gather(enc_px, 1, top[..., None].expand(-1, -1, 4)).detach()
        if not cfg.reparam:
            ref = ref.sigmoid()
        return enc_logits, enc_boxes, ref

    def _distinct_top(self, scores: Tensor, boxes: Tensor, ok: Tensor, k: int) -> Tensor:
        """Indices of k proposals: the one-to-one queries' are the best-scoring survivors of a
        class-agnostic NMS over a pool of the top 4·num_queries (padded with suppressed ones if
        fewer survive); the one-to-many queries' (training) the plain top-k after them."""
        q1 = min(self.cfg.num_queries, k)
        pool = torch.topk(scores, min(scores.shape[1], max(4 * q1, k)), dim=1)[1]
        xyxy = box_cxcywh_to_xyxy(torch.gather(boxes, 1, pool[..., None].expand(-1, -1, 4)))
        idx, _ = fixed_size_nms(xyxy, torch.gather(scores, 1, pool), torch.gather(ok, 1, pool),
                                self.cfg.distinct_queries_iou, q1)
        top = torch.gather(pool, 1, idx)
        return top if k == q1 else torch.cat([top, pool[:, : k - q1]], 1)


@torch.no_grad()
def postprocess(outputs: dict, target_sizes: Tensor, top_k: int = 100) -> dict[str, Tensor]:
    """NMS-free top-k over all (query, class) scores: fixed-size `scores` (B,k), `labels`
    (B,k) and `boxes` (B,k,4) xyxy in pixels of `target_sizes` (B,2) = (h, w)."""
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    b, q, c = logits.shape
    k = min(top_k, q * c)
    scores, idx = torch.topk(logits.sigmoid().reshape(b, -1), k, dim=1)
    labels = idx % c
    query = torch.div(idx, c, rounding_mode="floor")
    xyxy = torch.gather(box_cxcywh_to_xyxy(boxes), 1, query[..., None].expand(-1, -1, 4))
    h, w = target_sizes.to(xyxy.dtype).unbind(-1)
    xyxy = xyxy * torch.stack([w, h, w, h], -1)[:, None, :]
    return {"scores": scores, "labels": labels, "boxes": xyxy}


def build_plain_detr(backbone_name: str, preset: str = "paper", backbone_options: dict | None = None,
                     **overrides) -> PlainDETR:
    """`plain-detr-<backbone>`: the backbone is any edgedet model name with forward_features
    (QuadraNet variants, quadranet-arch:PATH, baselines). `preset` "paper" (300 queries, 6
    layers, hidden 256) or "cpu" (CPU_PRESET); other keyword options override fields of
    PlainDETRConfig."""
    if backbone_name.startswith(("plain-detr-", "asag-")):
        raise EdgedetError(f"'{backbone_name}' is a detector, not a backbone")
    if preset not in ("paper", "cpu"):
        raise EdgedetError(f"unknown Plain-DETR preset {preset!r} (paper or cpu)")
    base = PlainDETRConfig() if preset == "paper" else PlainDETRConfig(**CPU_PRESET)
    names = {f.name for f in fields(PlainDETRConfig)}
    bad = [k for k in overrides if k not in names]
    if bad:
        raise EdgedetError(f"Plain-DETR has no option {', '.join(bad)} (options: {', '.join(sorted(names))})")
    cfg = PlainDETRConfig.from_dict({**base.to_dict(), **overrides})
    try:
        backbone = create(backbone_name, **(backbone_options or {}))
    except EdgedetError as e:
        raise EdgedetError(f"Plain-DETR backbone: {e}") from None
    if not hasattr(backbone, "forward_features"):
        raise EdgedetError(f"backbone '{backbone_name}' has no forward_features; use a QuadraNet, "
                           "quadranet-arch:PATH or baseline model")
    model = PlainDETR(backbone, cfg)
    model.model_options = {"preset": preset, "backbone_options": dict(backbone_options or {}), **overrides}
    return model
