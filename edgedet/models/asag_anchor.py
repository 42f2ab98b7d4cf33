"""ASAG's adaptive sparse anchor generator (Fu et al., "Adaptive Sparse Anchor Generation").

Coarse stage: each level's FPN map is compressed to 8 channels (1×1 conv → act → 3×3 conv);
compressed P5, restricted to the image (not its padding), is resized to 30×30 and cut into
four 15×15 patches; P6 = stride-2 dilated 3×3 conv of it (one 15×15 patch). Each patch's
tokens get a LayerNorm over (225, 8) and a learned position embedding, then an MLP predicts
50 anchors (cx, cy, w, h, score logit) inside the patch. (15 is the paper's patch side,
`AnchorConfig.patch`; with patch p every 15 here reads p, 30 reads 2p and 225 reads p².)

Probing (P4, then P3): anchors whose score lies in (η_l, η_h) = (0.1, 0.7) and whose width
and height are below half a patch of that level select 15×15 patches centred on them;
selections are de-duplicated by NMS (IoU 0.25 on patch squares) and each patch predicts 20
anchors with its own MLP; they replace the anchors that selected them. Probing stops when
nothing is selected. Output: every anchor scoring > 0.1 that did not select a patch (at
least 5 from the coarse stage, at most 200 overall, highest scores first), padded per image
with a validity mask.

Modes. `dynamic`: per image, exact patch counts, early stop (the paper's eager behaviour).
`static`: fixed `max_patches` slots per probed level with masks, fixed 200 output slots, no
data-dependent Python control flow or shapes (what ONNX export traces). Both give the same
anchors whenever no probed level selects more patches than its static limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedet.models.layers import MLP
from edgedet.ops.boxes import box_cxcywh_to_xyxy
from edgedet.ops.nms import fixed_size_nms, nms, stable_argsort_desc, stable_rank_desc

PATCH = 15  # the paper's patch side in feature cells; P5 is resized to 2·PATCH square and cut in four


def coarse_offsets(patch: int) -> tuple[tuple[int, int], ...]:
    """(row, col) origins of the four P5 patches in the 2·patch resized map."""
    return ((0, 0), (0, patch), (patch, 0), (patch, patch))


@dataclass
class AnchorConfig:
    compress_dim: int = 8
    coarse_anchors: int = 50
    fine_anchors: int = 20
    score_low: float = 0.1  # η_l: also the keep threshold
    score_high: float = 0.7  # η_h
    patch_nms_iou: float = 0.25
    min_anchors: int = 5
    max_anchors: int = 200
    min_size_px: float = 3.0  # anchors thinner than this score 0
    max_patches: tuple[int, ...] = (16, 16)  # static slots on P4, P3
    train_gt_patches: bool = True
    patch: int = PATCH  # patch side in cells; smaller keeps probing local on small images


@dataclass
class StageOut:
    """One stage's predictions: raw (with grad) and detached anchors in pixels."""

    boxes_norm: Tensor  # (B, N, 4) cxcywh as image fractions, differentiable
    logits: Tensor  # (B, N) score logits, differentiable
    anchors: Tensor  # (B, N, 4) cxcywh pixels, detached
    scores: Tensor  # (B, N) sigmoid scores (0 for degenerate anchors), detached
    valid: Tensor  # (B, N) bool: slot holds a real anchor
    level: str = "P5"
    patch_xy: Tensor | None = None  # (B, M, 2) crop origins in feature cells (probed levels)
    patch_valid: Tensor | None = None  # (B, M)
    stride: int = 32
    patch: int = PATCH  # the generator's patch side in cells (what a probed level's patches span)


@dataclass
class AnchorOutput:
    anchors: Tensor  # (B, A, 4) cxcywh pixels
    scores: Tensor  # (B, A)
    valid: Tensor  # (B, A) bool
    stages: list[StageOut] = field(default_factory=list)


def resize_valid_region(x: Tensor, valid_hw: Tensor, size: int) -> Tensor:
    """Bilinear resize (align_corners=False, as F.interpolate) of each map's top-left
    valid_hw[b] = (h, w) region to size×size, by grid_sample on clamped source coordinates."""
    bsz, _, hh, ww = x.shape
    d = torch.arange(size, device=x.device, dtype=x.dtype) + 0.5
    h = valid_hw[:, 0:1].to(x.dtype)
    w = valid_hw[:, 1:2].to(x.dtype)
    sy = torch.minimum((d * h / size - 0.5).clamp(min=0), h - 1)
    sx = torch.minimum((d * w / size - 0.5).clamp(min=0), w - 1)
    gy = sy / max(hh - 1, 1) * 2 - 1
    gx = sx / max(ww - 1, 1) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(bsz, size, size), gy[:, :, None].expand(bsz, size, size)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def gather_patches(fmap: Tensor, xy: Tensor, size: int = PATCH) -> Tensor:
    """fmap (B,C,H,W), patch origins xy (B,M,2) int64 (x, y) → tokens (B, M, size², C)."""
    bsz, ch, _, w = fmap.shape
    m = xy.shape[1]
    r = torch.arange(size, device=fmap.device)
    ys = xy[..., 1:2] + r
    xs = xy[..., 0:1] + r
    flat = (ys[..., :, None] * w + xs[..., None, :]).reshape(bsz, 1, m * size * size)
    out = torch.gather(fmap.flatten(2), 2, flat.expand(bsz, ch, -1))
    return out.view(bsz, ch, m, size * size).permute(0, 2, 3, 1)


def crop_origins(centres: Tensor, image_wh: Tensor, stride: int, size: int = PATCH) -> Tensor:
    """Top-left cell (x, y) of size×size patches centred on pixel `centres` (B,M,2), moved
    inside the image's cells: floor(c/s − size/2), shifted back from the far edge, ≥ 0."""
    pos = torch.floor(centres / stride - size / 2)
    limit = torch.ceil(image_wh[:, None, :] / stride) - size
    return torch.minimum(pos, limit).clamp(min=0).long()


class AnchorGenerator(nn.Module):
    def __init__(
        self, dim: int = 256, cfg: AnchorConfig | None = None, strides: tuple[int, ...] = (8, 16, 32)
    ):
        super().__init__()
        self.cfg = cfg = cfg or AnchorConfig()
        self.strides = strides
        c = cfg.compress_dim
        hidden = 125 * c
        self.compress = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim // 2, 1), nn.ReLU(), nn.Conv2d(dim // 2, c, 3, padding=1))
            for _ in strides
        )
        self.p6 = nn.Conv2d(c, c, 3, stride=2, padding=2, dilation=2)
        tokens = cfg.patch * cfg.patch
        # index 0: coarse (P5/P6) patches; 1: P4; 2: P3 (the official order)
        self.token_norm = nn.ModuleList(nn.LayerNorm((tokens, c)) for _ in strides)
        self.pos_embed = nn.ModuleList(nn.Embedding(tokens, c) for _ in strides)
        self.coarse_head = MLP([tokens * c, hidden, hidden, 5 * cfg.coarse_anchors])
        self.fine_head = MLP([tokens * c, hidden, hidden, 5 * cfg.fine_anchors])
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for emb in self.pos_embed:
            nn.init.zeros_(emb.weight)

    # ---- pieces shared by both modes -------------------------------------------------
    def _tokens(self, x: Tensor, level: int) -> Tensor:
        """(…, patch², C) patch tokens → (…, patch²·C) after LayerNorm + position embedding."""
        x = self.token_norm[level](x) + self.pos_embed[level].weight
        return x.flatten(-2)

    def _degenerate(self, anchors: Tensor, scores: Tensor) -> Tensor:
        thin = (anchors[..., 2] < self.cfg.min_size_px) | (anchors[..., 3] < self.cfg.min_size_px)
        return torch.where(thin, torch.zeros_like(scores), scores)

    def coarse(self, p5c: Tensor, image_wh: Tensor) -> StageOut:
        """Four P5 patches + the P6 patch → 5 × 50 anchors per image."""
        bsz = p5c.shape[0]
        valid_hw = torch.stack([torch.round(image_wh[:, 1] / 32), torch.round(image_wh[:, 0] / 32)], 1)
        valid_hw = torch.minimum(valid_hw.clamp(min=1), valid_hw.new_tensor(p5c.shape[-2:]))
        ps = self.cfg.patch
        interp = 2 * ps
        x = resize_valid_region(p5c, valid_hw, interp)
        patches = [x[:, :, r : r + ps, c : c + ps] for r, c in coarse_offsets(ps)]
        patches.append(self.p6(F.relu(x)))
        tok = torch.stack(patches, 1).flatten(3).transpose(2, 3)  # (B, 5, patch², C)
        raw = self.coarse_head(self._tokens(tok, 0)).view(bsz, 5, self.cfg.coarse_anchors, 5)
        box = raw[..., :4].sigmoid()
        scale = ps / interp
        shift = box.new_tensor([[c / interp, r / interp] for r, c in coarse_offsets(ps)] + [[0.0, 0.0]])
        size = box.new_tensor([scale] * 4 + [1.0])
        xy = box[..., :2] * size[:, None, None] + shift[:, None, :]
        wh = box[..., 2:] * size[:, None, None]
        boxes_norm = torch.cat([xy, wh], -1).flatten(1, 2)
        logits = raw[..., 4].flatten(1)
        return self._finish(
            boxes_norm, logits, image_wh, torch.ones_like(logits, dtype=torch.bool), "P5/P6", 32
        )

    def _finish(
        self,
        boxes_norm: Tensor,
        logits: Tensor,
        image_wh: Tensor,
        valid: Tensor,
        level: str,
        stride: int,
        patch_xy: Tensor | None = None,
        patch_valid: Tensor | None = None,
    ) -> StageOut:
        whwh = image_wh.repeat(1, 2)[:, None, :]
        anchors = boxes_norm.detach() * whwh
        scores = self._degenerate(anchors, logits.detach().sigmoid())
        return StageOut(
            boxes_norm, logits, anchors, scores, valid, level, patch_xy, patch_valid, stride, self.cfg.patch
        )

    def fine(
        self, fmap: Tensor, origins: Tensor, patch_valid: Tensor, image_wh: Tensor, level: int, stride: int
    ) -> StageOut:
        """Patches at `origins` (B,M,2) of a compressed map → 20 anchors each (B, M·20)."""
        bsz, m = origins.shape[:2]
        ps = self.cfg.patch
        tok = gather_patches(fmap, origins, ps)
        raw = self.fine_head(self._tokens(tok, level)).view(bsz, m, self.cfg.fine_anchors, 5)
        box = raw[..., :4].sigmoid()
        cells = (image_wh / stride)[:, None, None, :]  # image extent in feature cells
        xy = (box[..., :2] * ps + origins[:, :, None, :].to(box.dtype)) / cells
        wh = box[..., 2:] * ps / cells
        boxes_norm = torch.cat([xy, wh], -1).flatten(1, 2)
        logits = raw[..., 4].flatten(1)
        valid = patch_valid[:, :, None].expand(-1, -1, self.cfg.fine_anchors).flatten(1)
        out = self._finish(boxes_norm, logits, image_wh, valid, f"P{5 - level}", stride, origins, patch_valid)
        outside = (boxes_norm[..., 0].detach() >= 1) | (boxes_norm[..., 1].detach() >= 1)
        out.scores = torch.where(outside, torch.zeros_like(out.scores), out.scores)
        return out

    def selecting(self, st: StageOut, stride: int) -> Tensor:
        """Anchors that probe the next finer level: uncertain score and smaller than half a patch."""
        half = stride * self.cfg.patch / 2
        a, s = st.anchors, st.scores
        return (
            st.valid
            & (s > self.cfg.score_low)
            & (s < self.cfg.score_high)
            & (a[..., 2] < half)
            & (a[..., 3] < half)
        )

    def kept(self, st: StageOut, sel: Tensor, first: bool) -> Tensor:
        """Anchors of a stage that go to the output; the coarse stage keeps at least min_anchors."""
        keep = st.valid & (st.scores > self.cfg.score_low) & ~sel
        if first:
            top = stable_rank_desc(st.scores) < self.cfg.min_anchors
            too_few = keep.sum(1, keepdim=True) < self.cfg.min_anchors
            keep = (too_few & top) | (~too_few & keep)
        return keep

    def compressed(self, feats: list[Tensor]) -> list[Tensor]:
        """Compress P3, P4, P5 to compress_dim channels; pad to ≥ patch cells so any patch fits."""
        return [self._compress_one(f, i) for i, f in enumerate(feats)]

    # ---- the two execution modes ---------------------------------------------------------
    def forward(
        self, feats: list[Tensor], image_wh: Tensor, mode: str = "dynamic", targets: list[dict] | None = None
    ) -> AnchorOutput:
        """feats: FPN P3, P4, P5 (B,D,H,W); image_wh (B,2) unpadded image sizes in pixels."""
        if mode == "static" or self.training:
            return self._static(feats, image_wh, targets if self.training else None)
        if mode != "dynamic":
            raise ValueError(f"mode must be 'dynamic' or 'static', got {mode!r}")
        per_image = [
            self._dynamic_one([f[b : b + 1] for f in feats], image_wh[b : b + 1])
            for b in range(image_wh.shape[0])
        ]
        return _pad_outputs(per_image)

    def _dynamic_one(self, feats: list[Tensor], image_wh: Tensor) -> tuple[Tensor, Tensor]:
        """One image, eager: exact patch counts and early stop. → (anchors (A,4), scores (A,))."""
        comp: dict[int, Tensor] = {}
        st = self.coarse(self.compress[-1](feats[-1]), image_wh)
        chosen_a, chosen_s = [], []
        n_levels = len(self.strides)
        for i in range(1, n_levels):
            level_idx = n_levels - 1 - i  # P4 then P3
            stride = self.strides[level_idx]
            sel = self.selecting(st, stride)
            keep = self.kept(st, sel, first=i == 1)
            chosen_a.append(st.anchors[keep])
            chosen_s.append(st.scores[keep])
            if not bool(sel.any()):
                st = None
                break
            side = float(stride * self.cfg.patch)
            cand = st.anchors[sel]
            squares = box_cxcywh_to_xyxy(torch.cat([cand[:, :2], cand.new_full((len(cand), 2), side)], 1))
            order = nms(squares, st.scores[sel], self.cfg.patch_nms_iou)
            origins = crop_origins(cand[order, :2][None], image_wh, stride, self.cfg.patch)
            if level_idx not in comp:
                comp[level_idx] = self._compress_one(feats[level_idx], level_idx)
            every = torch.ones(origins.shape[:2], dtype=torch.bool, device=origins.device)
            st = self.fine(comp[level_idx], origins, every, image_wh, i, stride)
        if st is not None:
            keep = self.kept(st, torch.zeros_like(st.valid), first=False)
            chosen_a.append(st.anchors[keep])
            chosen_s.append(st.scores[keep])
        anchors, scores = torch.cat(chosen_a), torch.cat(chosen_s)
        order = torch.sort(scores, descending=True, stable=True).indices[: self.cfg.max_anchors]
        return anchors[order], scores[order]

    def _compress_one(self, f: Tensor, level_idx: int) -> Tensor:
        x = self.compress[level_idx](f)
        ps = self.cfg.patch
        return F.pad(x, (0, max(ps - x.shape[-1], 0), 0, max(ps - x.shape[-2], 0)))

    def _static(self, feats: list[Tensor], image_wh: Tensor, targets: list[dict] | None) -> AnchorOutput:
        comp = self.compressed(feats)
        st = self.coarse(comp[-1], image_wh)
        stages = [st]
        cand_a, cand_s, cand_k = [], [], []
        n_levels = len(self.strides)
        for i in range(1, n_levels):
            level_idx = n_levels - 1 - i
            stride = self.strides[level_idx]
            sel = self.selecting(st, stride)
            cand_a.append(st.anchors)
            cand_s.append(st.scores)
            cand_k.append(self.kept(st, sel, first=i == 1))
            side = float(stride * self.cfg.patch)
            squares = box_cxcywh_to_xyxy(
                torch.cat([st.anchors[..., :2], torch.full_like(st.anchors[..., 2:], side)], -1)
            )
            m = self.cfg.max_patches[i - 1]
            idx, pvalid = fixed_size_nms(squares, st.scores, sel, self.cfg.patch_nms_iou, m)
            centres = torch.gather(st.anchors[..., :2], 1, idx[..., None].expand(-1, -1, 2))
            origins = crop_origins(centres, image_wh, stride, self.cfg.patch)
            if targets is not None and self.cfg.train_gt_patches:
                origins, pvalid = _fill_with_gt_patches(
                    origins, pvalid, targets, image_wh, stride, self.cfg.patch_nms_iou, self.cfg.patch
                )
            st = self.fine(comp[level_idx], origins, pvalid, image_wh, i, stride)
            stages.append(st)
        cand_a.append(st.anchors)
        cand_s.append(st.scores)
        cand_k.append(self.kept(st, torch.zeros_like(st.valid), first=False))
        anchors, scores, keep = torch.cat(cand_a, 1), torch.cat(cand_s, 1), torch.cat(cand_k, 1)
        key = torch.where(keep, scores, torch.full_like(scores, -1.0))
        order = stable_argsort_desc(key, self.cfg.max_anchors)
        anchors = torch.gather(anchors, 1, order[..., None].expand(-1, -1, 4))
        return AnchorOutput(anchors, torch.gather(scores, 1, order), torch.gather(keep, 1, order), stages)


def _pad_outputs(per_image: list[tuple[Tensor, Tensor]]) -> AnchorOutput:
    """Stack variable-length per-image anchors; padding slots get the whole-image box."""
    n = max(len(a) for a, _ in per_image)
    anchors, scores, valid = [], [], []
    for a, s in per_image:
        pad = n - len(a)
        anchors.append(torch.cat([a, a.new_zeros(pad, 4)]))
        scores.append(torch.cat([s, s.new_zeros(pad)]))
        valid.append(torch.arange(n, device=a.device) < len(a))
    return AnchorOutput(torch.stack(anchors), torch.stack(scores), torch.stack(valid))


@torch.no_grad()
def _fill_with_gt_patches(
    origins: Tensor,
    pvalid: Tensor,
    targets: list[dict],
    image_wh: Tensor,
    stride: int,
    max_iou: float = 0.25,
    patch: int = PATCH,
) -> tuple[Tensor, Tensor]:
    """Training: free patch slots get patches around small ground-truth objects (randomly
    shifted, still containing the object) so the fine heads always see positives. A patch
    overlapping an already chosen one by IoU > `max_iou` (the probing NMS threshold) is not
    added: once moved inside the image, patches of nearby objects (all of them on a small
    image) coincide, and identical patches give identical anchors whose one match and
    many non-matches pull the same prediction both ways."""
    origins, pvalid = origins.clone(), pvalid.clone()
    half = stride * patch / 2
    for b, t in enumerate(targets):
        boxes = t["boxes"].to(origins.device) * image_wh[b].repeat(2)
        small = boxes[(boxes[:, 2] < half) & (boxes[:, 3] < half)]
        free = torch.nonzero(~pvalid[b]).flatten().tolist()
        if len(small) == 0 or not free:
            continue
        small = small[torch.randperm(len(small), device=small.device)]
        x1y1 = (small[:, :2] - small[:, 2:] / 2) / stride
        x2y2 = (small[:, :2] + small[:, 2:] / 2) / stride
        lo = (x2y2 - patch).clamp(min=0)  # the patch must still reach the far corner
        hi = torch.maximum(torch.floor(x1y1), lo)
        pos = torch.floor(lo + torch.rand_like(lo) * (hi - lo + 1)).clamp(max=hi)
        limit = torch.ceil(image_wh[b] / stride) - patch
        pos = torch.minimum(pos, limit).clamp(min=0).long()
        for p in pos:
            if not free:
                break
            taken = origins[b][pvalid[b]]
            if len(taken) and float(_square_iou(p, taken, patch).max()) > max_iou:
                continue
            slot = free.pop(0)
            origins[b, slot] = p
            pvalid[b, slot] = True
    return origins, pvalid


def _square_iou(origin: Tensor, others: Tensor, size: int = PATCH) -> Tensor:
    """IoU of the size×size patch at `origin` (2,) with those at `others` (M,2), in cells."""
    overlap = (size - (others - origin).abs()).clamp(min=0)
    inter = (overlap[:, 0] * overlap[:, 1]).float()
    return inter / (2 * size * size - inter)
