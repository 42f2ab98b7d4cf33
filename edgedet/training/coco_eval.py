"""COCO mAP through pycocotools for any edgedet detector.

`evaluate` runs the model in eval mode over a `CocoDetection`, keeps the detector's
fixed-size top-k detections per image (scaled to the original image size; entries of score
0, padding or NMS-suppressed, are not detections), and returns the 12 standard COCO numbers
under readable names (AP, AP50, AP75, AP_small, ...).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable

import torch
from torch import Tensor, nn

from edgedet.data.coco import CocoDetection, collate
from edgedet.errors import EdgedetError
from edgedet.models.plain_detr import postprocess

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def default_postprocess(model: nn.Module) -> Callable[[dict, Tensor, int], dict]:
    """The model's own `postprocess(outputs, target_sizes, top_k)` or Plain-DETR's top-k."""
    fn = getattr(model, "postprocess", None)
    return fn if fn is not None else postprocess


def coco_ground_truth(doc: dict):
    """A pycocotools COCO object from an in-memory document (adds area / iscrowd if absent)."""
    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise EdgedetError("COCO evaluation needs pycocotools: pip install 'edgedet[coco]'") from e
    doc = copy.deepcopy(doc)
    for a in doc["annotations"]:
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
    for i, a in enumerate(doc["annotations"]):
        a.setdefault("id", i + 1)
    gt = COCO()
    gt.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


@torch.no_grad()
def detect_dataset(model: nn.Module, dataset: CocoDetection, batch_size: int = 8, top_k: int = 100,
                   max_images: int | None = None) -> list[dict]:
    """COCO-format detection results ({image_id, category_id, bbox xywh, score})."""
    post = default_postprocess(model)
    was_training = model.training
    model.eval()
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    results: list[dict] = []
    try:
        for start in range(0, n, batch_size):
            images, masks, targets = collate([dataset[i] for i in range(start, min(n, start + batch_size))])
            out = model(images, masks)
            sizes = torch.stack([t["orig_size"] for t in targets])
            det = post(out, sizes, top_k)
            rows = zip(targets, det["scores"], det["labels"], det["boxes"], strict=True)
            for t, scores, labels, boxes in rows:
                for s, lab, b in zip(scores.tolist(), labels.tolist(), boxes.tolist(), strict=True):
                    if s <= 0.0:  # padding queries and NMS-suppressed entries: not detections
                        continue
                    results.append({"image_id": t["image_id"], "category_id": dataset.label_to_cat[lab],
                                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    finally:
        model.train(was_training)
    return results


def coco_metrics(gt_doc: dict, results: list[dict], image_ids: list[int] | None = None) -> dict:
    """Run COCOeval (bbox) and name its 12 statistics; `summary` holds pycocotools' table."""
    from pycocotools.cocoeval import COCOeval

    gt = coco_ground_truth(gt_doc)
    if not results:
        return {**{k: 0.0 for k in STAT_NAMES}, "summary": "no detections", "num_detections": 0}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats, strict=True)}
    summary = "\n".join(line for line in buf.getvalue().splitlines() if line.startswith(" Average"))
    return {**stats, "summary": summary, "num_detections": len(results)}


def evaluate(model: nn.Module, dataset: CocoDetection, batch_size: int = 8, top_k: int = 100,
             max_images: int | None = None) -> dict:
    """Detect over `dataset` (the first `max_images`) and return COCO bbox metrics.
    A −1 from pycocotools (no ground truth in an area range) is kept as −1."""
    results = detect_dataset(model, dataset, batch_size, top_k, max_images)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    ids = [int(dataset.images[i]["id"]) for i in range(n)]
    return coco_metrics(dataset.coco_doc, results, ids)
