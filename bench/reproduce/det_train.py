"""`edgedet reproduce det-train`: the detectors' training acceptance — Plain-DETR and ASAG
with a QuadraNet25-xxs backbone trained on the synthetic detection set on this CPU within a
wall-clock budget (default 28 min of training + final evaluation per detector, inside the
30-minute target), reporting COCO AP / AP50 / AP_small (pycocotools, validation split) and
the AP50 curve against wall-clock minutes. The recipes live in
`edgedet.training.det_recipe`; the target is AP50 ≥ 0.5. Where a recipe post-processes with
NMS (ASAG, as the official code's `--nms`), the row also holds the NMS-free figures of the same
checkpoint (`final_without_nms`, evaluated after the budget).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedet.distributed import spawn
from edgedet.training.coco_eval import evaluate
from edgedet.training.det_recipe import TARGET_AP50, recipe, train_rank
from edgedet.training.detection import load_datasets, load_trained

SCHEMA_VERSION = 3  # 2: processes × threads per detector (data-parallel runs); 3: nms_iou, final_without_nms
METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def metrics_without_nms(checkpoint: Path, recipe) -> dict:
    """COCO metrics of a trained checkpoint on the recipe's validation split with NMS off."""
    import torch

    torch.set_num_threads(recipe.processes * recipe.threads)
    model, _ = load_trained(checkpoint)
    model.nms_iou = None
    _, val = load_datasets(recipe.train_config(str(checkpoint.parent)), augment=False)
    m = evaluate(model, val)
    return {k: m[k] for k in METRICS}


@dataclass(frozen=True)
class DetectorRun:
    """One detector's training run: budget, parallelism, final COCO metrics (`METRICS`), the
    AP curve against wall minutes, and (for a recipe with NMS) the NMS-free final metrics."""

    detector: str
    model: str
    recipe: dict[str, Any]
    budget_minutes: float
    processes: int
    threads: int
    wall_minutes: float
    steps: int
    images_per_step: int
    final: dict[str, float | None]
    curve: list[dict[str, float]]  # epoch, step, minutes and the AP / AP50 / AP_small evaluated then
    checkpoint: str
    nms_iou: float | None
    final_without_nms: dict[str, float] | None = None  # present exactly when nms_iou is

    @property
    def passed(self) -> bool:
        return self.final["AP50"] is not None and self.final["AP50"] >= TARGET_AP50

    def to_json(self) -> dict[str, Any]:
        out = {"detector": self.detector, "model": self.model, "recipe": self.recipe,
               "budget_minutes": self.budget_minutes, "processes": self.processes, "threads": self.threads,
               "wall_minutes": self.wall_minutes, "steps": self.steps, "images_per_step": self.images_per_step,
               "final": self.final, "target_ap50": TARGET_AP50, "passed": self.passed, "curve": self.curve,
               "checkpoint": self.checkpoint, "nms_iou": self.nms_iou}
        if self.nms_iou is not None:
            out["final_without_nms"] = self.final_without_nms
        return out


@dataclass(frozen=True)
class DetTrainResult:
    """The suite's result: each detector's run and the load average when it ended."""

    load_average_1m: float
    detectors: list[DetectorRun]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema `SCHEMA_VERSION`)."""
        return {"schema_version": SCHEMA_VERSION, "suite": "det-train", "load_average_1m": self.load_average_1m,
                "data": "synthetic-det", "detectors": [d.to_json() for d in self.detectors]}


def run_one(name: str, minutes: float | None, out_dir: Path, processes: int | None = None,
            threads: int | None = None, log=print) -> DetectorRun:
    """Train one recipe (in `processes` data-parallel processes of `threads` threads; default:
    the recipe's); returns its run (final metrics, curve, wall time)."""
    import json

    r = recipe(name)
    budget = r.minutes if minutes is None else minutes
    procs, thr = processes or r.processes, threads or r.threads
    out = out_dir / name
    log(f"training {r.model} for {budget} min: {procs} process(es) × {thr} thread(s)")
    t0 = time.perf_counter()
    spawn(train_rank, procs, (r, str(out), budget, thr))
    wall = time.perf_counter() - t0
    run = json.loads((out / "metrics.json").read_text())
    curve = [{"epoch": e["epoch"], "step": e["step"], "minutes": e["time_s"] / 60.0,
              **{k: e[k] for k in ("AP", "AP50", "AP_small") if k in e}} for e in run["epochs"]]
    nms_iou = r.options().get("nms_iou")
    return DetectorRun(
        detector=name, model=r.model, recipe=r.to_json(), budget_minutes=budget, processes=procs, threads=thr,
        wall_minutes=wall / 60.0, steps=run["epochs"][-1]["step"] if run["epochs"] else 0,
        images_per_step=r.batch_size * procs, final={k: run["final"].get(k) for k in METRICS}, curve=curve,
        checkpoint=str(out / "checkpoint.pt"), nms_iou=nms_iou,
        final_without_nms=metrics_without_nms(out / "checkpoint.pt", r) if nms_iou is not None else None)


def print_table(result: DetTrainResult) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Detector training on the synthetic set (measured wall clock, this machine)")
    for c in ("detector", "procs×threads", "budget min", "wall min", "steps", "AP", "AP50", "AP_small",
              "AP50 ≥ 0.5"):
        t.add_column(c, justify="right")
    for r in result.detectors:
        f = r.final
        t.add_row(r.model, f"{r.processes}×{r.threads}", f"{r.budget_minutes:.1f}",
                  f"{r.wall_minutes:.1f}", str(r.steps),
                  f"{f['AP']:.3f}", f"{f['AP50']:.3f}", f"{f['AP_small']:.3f}", "yes" if r.passed else "NO")
    Console().print(t)
    for r in result.detectors:
        pts = ", ".join(f"{p['minutes']:.1f} min: {p['AP50']:.3f}" for p in r.curve if "AP50" in p)
        print(f"{r.model} AP50 vs wall minutes: {pts}")
        if r.final_without_nms:
            f = r.final_without_nms
            print(f"{r.model} with class-wise NMS at IoU {r.nms_iou}; the same checkpoint without NMS: "
                  f"AP {f['AP']:.3f}, AP50 {f['AP50']:.3f}, AP_small {f['AP_small']:.3f}")
