"""`edgedet reproduce asag-nms-tuning`: how a trained ASAG checkpoint's AP depends on its two
inference-time NMS settings (class-wise detection NMS IoU; the class-agnostic anchor NMS on
or off at inference), evaluated on a *tuning split*: a synthetic set drawn with another seed
than the training and validation images, so that choosing a setting here never looks at the
split the acceptance reports. This is how the det-train ASAG recipe's `nms_iou` and
`anchor_nms_at_inference` were chosen (docs/detectors.md, "Seventh session").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError
from edgedet.training.coco_eval import evaluate
from edgedet.training.config import TrainConfig
from edgedet.training.detection import load_datasets, load_trained

SCHEMA_VERSION = 1
DETECTION_IOUS = (None, 0.4, 0.5, 0.6, 0.7)
METRICS = ("AP", "AP50", "AP_small")


def tuning_split(model: str, img_size: int, images: int, seed: int):
    """The tuning images: the validation split of a synthetic set with `seed` (cached)."""

    cfg = TrainConfig(model=model, data="synthetic-det", img_size=img_size, seed=seed, train_size=1,
                      val_size=images)
    return load_datasets(cfg, augment=False)[1]


@dataclass(frozen=True)
class GridRow:
    """One inference setting of one checkpoint and its metrics (`METRICS`, in that order)."""

    anchor_nms_at_inference: bool
    nms_iou: float | None  # None: no class-wise detection NMS
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"anchor_nms_at_inference": self.anchor_nms_at_inference, "nms_iou": self.nms_iou,
                **{k: self.metrics[k] for k in METRICS}}


@dataclass(frozen=True)
class CheckpointGrid:
    """Every setting of one checkpoint, with the settings it was trained with."""

    checkpoint: str
    model: str
    trained_with: dict[str, Any]  # anchor_nms_iou, anchor_nms_at_inference, nms_iou
    rows: list[GridRow]

    def best(self) -> GridRow:
        """The setting of the highest AP50 (the first of equals)."""
        return max(self.rows, key=lambda r: r.metrics["AP50"])

    def to_json(self) -> dict[str, Any]:
        best = self.best()
        return {"checkpoint": self.checkpoint, "model": self.model, "trained_with": dict(self.trained_with),
                "rows": [r.to_json() for r in self.rows],
                "best": {"anchor_nms_at_inference": best.anchor_nms_at_inference, "nms_iou": best.nms_iou,
                         "AP50": best.metrics["AP50"]}}


@dataclass(frozen=True)
class TuningResult:
    """The suite's result: the tuning split (`images`, `seed`) and each checkpoint's grid."""

    images: int
    seed: int
    checkpoints: list[CheckpointGrid]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema `SCHEMA_VERSION`)."""
        return {"schema_version": SCHEMA_VERSION, "suite": "asag-nms-tuning", "images": self.images,
                "seed": self.seed, "checkpoints": [c.to_json() for c in self.checkpoints]}


def run(checkpoints: list[Path], images: int, seed: int, log=print) -> TuningResult:
    """The grid of every checkpoint on the tuning split of `images` images drawn with `seed`."""
    return TuningResult(images=images, seed=seed, checkpoints=[grid(c, images, seed, log) for c in checkpoints])


def grid(checkpoint: Path, images: int, seed: int, log=print) -> CheckpointGrid:
    """AP / AP50 / AP_small of one checkpoint for every (anchor NMS at inference, detection
    NMS IoU) pair on the tuning split."""

    model, state = load_trained(checkpoint)
    if not hasattr(model, "anchor_nms_at_inference"):
        raise EdgedetError(f"{checkpoint} is not an ASAG checkpoint ({state['model_name']})")
    if seed == int(state["config"].get("seed", 0)):
        raise EdgedetError(f"--seed {seed} is the seed the checkpoint was trained with: pick another")
    data = tuning_split(state["model_name"], int(state["config"]["img_size"]), images, seed)
    anchor_modes = [True, False] if model.anchor_nms_iou is not None else [False]
    rows = []
    for at_inference in anchor_modes:
        for iou in DETECTION_IOUS:
            model.anchor_nms_at_inference, model.nms_iou = at_inference, iou
            m = evaluate(model, data)
            rows.append(GridRow(at_inference, iou, {k: m[k] for k in METRICS}))
            log(f"  {checkpoint}: anchor NMS at inference {at_inference}, detection NMS {iou}: "
                f"AP50 {m['AP50']:.3f}")
    return CheckpointGrid(checkpoint=str(checkpoint), model=state["model_name"],
                          trained_with={k: state["model_options"].get(k) for k in
                                        ("anchor_nms_iou", "anchor_nms_at_inference", "nms_iou")},
                          rows=rows)


def print_table(result: TuningResult) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"ASAG inference NMS on a tuning split ({result.images} synthetic images, "
                    f"seed {result.seed}): AP50")
    t.add_column("checkpoint")
    t.add_column("anchor NMS at inference")
    for iou in DETECTION_IOUS:
        t.add_column("no det. NMS" if iou is None else f"det. NMS {iou}", justify="right")
    for c in result.checkpoints:
        for mode in dict.fromkeys(r.anchor_nms_at_inference for r in c.rows):
            vals = [r.metrics["AP50"] for r in c.rows if r.anchor_nms_at_inference == mode]
            t.add_row(c.checkpoint, "on" if mode else "off", *(f"{v:.3f}" for v in vals))
    Console().print(t)
