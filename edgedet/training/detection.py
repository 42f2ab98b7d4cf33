"""Training loop for the detectors (`edgedet train plain-detr-* | asag-*`).

Generic over detectors through a small interface:
    model(images, masks[, targets]) -> outputs    (training mode: everything the loss needs;
                                                   targets are passed when forward takes them)
    model.loss(outputs, targets) -> dict          (must hold "loss", the scalar to minimise)
    model(images, masks) in eval mode -> {"pred_logits", "pred_boxes"} and optionally
    model.postprocess(outputs, target_sizes, top_k) -> fixed-size scores/labels/boxes
Data parallel under torchrun or `edgedet.distributed.spawn`: each of N processes trains on its
share of every batch (`batch_size` images per process), rank 0 evaluates and writes files.
Data: `--data synthetic-det` (generated once into the cache, at `--img-size`, with
`--train-size` / `--val-size` images) or `--data coco:ANN.json:IMAGES_DIR[,VAL.json:VAL_DIR]`.
Writes OUT/checkpoint.pt (weights_only-loadable), OUT/metrics.json (schema_version 1:
per-epoch losses, final COCO metrics) and OUT/training_curve.png.
"""

from __future__ import annotations

import inspect
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor, nn

from edgedet.data.coco import Augment, CocoDetection, collate, parse_data_spec
from edgedet.data.synthetic_det import SyntheticDetConfig, ensure_synthetic_coco
from edgedet.distributed import dist_setup
from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.io.checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from edgedet.models import create
from edgedet.training.coco_eval import evaluate
from edgedet.training.config import TrainConfig
from edgedet.training.optim import adamw, param_groups
from edgedet.training.plot import Curve, Panel, Series, plot_training_curve
from edgedet.training.schedule import warmup_cosine

SCHEMA_VERSION = 1


@dataclass
class DetectionRun:
    """What a detection training run produced (also written as metrics.json)."""

    model: str
    data: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    threads: int = 1
    model_options: dict = field(default_factory=dict)
    processes: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "task": "detection", "model": self.model, "data": self.data,
                "threads": self.threads, "processes": self.processes,
                "wall_time_s": self.wall_time_s, "model_options": self.model_options,
                "epochs": self.epochs, "final": self.final}


def load_datasets(cfg: TrainConfig, augment: bool = True) -> tuple[CocoDetection, CocoDetection]:
    """Train and validation datasets for `cfg.data` (see module docstring)."""
    spec = parse_data_spec(cfg.data)
    if spec["kind"] == "synthetic-det":
        syn = SyntheticDetConfig(image_size=cfg.img_size, num_train=cfg.train_size, num_val=cfg.val_size,
                                 seed=cfg.seed)
        paths = ensure_synthetic_coco(syn, spec.get("root"))
        train_ann, train_img, val_ann, val_img = (paths["train_ann"], paths["train_images"], paths["val_ann"],
                                                  paths["val_images"])
    else:
        train_ann, train_img, val_ann, val_img = spec["train_ann"], spec["train_images"], spec["val_ann"], \
            spec["val_images"]
    aug = Augment() if augment else None
    train = CocoDetection(train_ann, train_img, max_size=cfg.img_size, augment=aug)
    val = CocoDetection(val_ann, val_img, max_size=cfg.img_size, augment=None, require_annotations=False)
    if val.label_to_cat != train.label_to_cat:
        raise EdgedetError(f"{val_ann}: categories differ from the training annotations {train_ann}")
    return train, val


def default_model_options(model: str, img_size: int) -> dict[str, Any]:
    """Detectors train with their small CPU preset below 512-pixel images, the paper's
    configuration from 512 up (documented in docs/detectors.md)."""
    if model.startswith(("plain-detr-", "asag-")):
        return {"preset": "cpu" if img_size < 512 else "paper"}
    return {}


def build_detector(model: str, num_classes: int, options: dict[str, Any]) -> nn.Module:
    return create(model, num_classes=num_classes, **options)


def set_layer_scale(backbone: nn.Module, value: float) -> int:
    """Fill every block's layer-scale vectors (gamma1, gamma2) with `value`; returns how many."""
    n = 0
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if name.rsplit(".", 1)[-1] in ("gamma1", "gamma2"):
                p.fill_(value)
                n += 1
    return n


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class DetectionOptions:
    """How one detection run is driven (beyond its TrainConfig).

    `max_minutes` fits the cosine schedule into that budget (re-estimated as the run goes)
    and stops early (after a whole step), still evaluating and checkpointing; `clock` "wall"
    or "cpu" (this process's CPU time, for budgets on a shared machine); `log_every` > 0
    prints the loss every that many steps; `model_options` replace `default_model_options`
    (e.g. a recipe's); `backbone_layer_scale` re-initialises the backbone blocks' layer-scale
    γ (a from-scratch recipe choice, see det_recipe); `eval_max_images` caps the final
    evaluation's images, `curve_eval_images` the intermediate ones'; `augment` False trains
    on the images as they are (no flip, resize or crop)."""

    max_minutes: float | None = None
    eval_max_images: int | None = None
    clock: str = "wall"
    log_every: int = 0
    model_options: dict[str, Any] | None = None
    backbone_layer_scale: float | None = None
    curve_eval_images: int | None = None
    augment: bool = True


@dataclass
class _Trainee:
    """What a run trains: the model (and its DDP wrapper), optimiser, data and run record."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    train_ds: CocoDetection
    val_ds: CocoDetection
    run: DetectionRun
    options: dict[str, Any]
    takes_targets: bool


class BudgetScheduler:
    """Fits the cosine schedule into a time budget: after 10 steps and every 25 after that,
    total steps = steps so far + a share of the remaining time / time per step (the machine's
    load changes, so it is re-estimated); a share is kept for the evaluations. Every rank
    takes the slowest one's decision."""

    BUDGET_SHARE = 0.92  # of the remaining budget given to training steps (the rest: final evaluation)

    def __init__(self, max_minutes: float | None, clock: str, start_step: int, world: int):
        self.now = time.process_time if clock == "cpu" else time.perf_counter
        self.c0, self.start_step, self.world = self.now(), start_step, world
        self.deadline = None if max_minutes is None else self.c0 + 60.0 * max_minutes

    def update(self, step: int, total_steps: int, max_steps: int, console: Console) -> tuple[int, bool]:
        """(total steps from now on, whether the budget is spent), after `step` steps."""
        if self.deadline is None:
            return total_steps, False
        done, fit = step - self.start_step, 0
        if done >= 10 and done % 25 == 10:
            per_step = (self.now() - self.c0) / done
            fit = step + int(self.BUDGET_SHARE * (self.deadline - self.now()) / max(per_step, 1e-9))
            fit = max(min(fit, max_steps), step + 1)
        fit, out_of_time = _agree(fit, self.now() > self.deadline, self.world)
        if fit and fit != total_steps:
            if done == 10:
                console.print(f"time budget: schedule fitted to {fit} steps")
            total_steps = fit
        return total_steps, out_of_time


def train(cfg: TrainConfig, resume: bool = False, **options: Any) -> DetectionRun:
    """Train the detector `cfg.model` (options: the fields of DetectionOptions); evaluates
    COCO mAP on the validation set at the end and at every checkpoint."""
    opts = DetectionOptions(**options)
    rank, world = dist_setup()
    console = Console(stderr=True, quiet=rank != 0)
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    _seed_everything(cfg.seed)
    out = Path(cfg.out)
    saved = _load_resume(cfg, out / CHECKPOINT_NAME) if resume else None
    t = _build(cfg, opts, saved, rank, world, threads)
    steps_per_epoch = max(1, len(t.train_ds) // (cfg.batch_size * world))
    max_steps = steps_per_epoch * cfg.epochs
    start_epoch, step = (int(saved["epoch"]), int(saved["step"])) if saved is not None else (0, 0)
    console.print(f"[bold]{cfg.model}[/] on {cfg.data}: {len(t.train_ds)} train / {len(t.val_ds)} val images, "
                  f"{t.train_ds.num_classes} classes, {sum(p.numel() for p in t.model.parameters()) / 1e6:.2f} "
                  f"M params, options {t.options}, {world} process(es) × {threads} thread(s), "
                  f"{cfg.batch_size * world} images per step")
    t0 = time.perf_counter()
    budget = BudgetScheduler(opts.max_minutes, opts.clock, step, world)
    total_steps = max_steps
    for epoch in range(start_epoch, cfg.epochs):
        step, total_steps, sums, n = _train_epoch(t, cfg, opts, epoch, step, total_steps, steps_per_epoch,
                                                  budget, rank, world, console, t0)
        stopped = step >= total_steps and step < max_steps
        row = {"epoch": epoch + 1, "step": step, "lr": t.optimizer.param_groups[0]["lr"],
               "time_s": time.perf_counter() - t0, "cpu_time_s": time.process_time(),
               **{k: v / max(n, 1) for k, v in sums.items()}}
        last = stopped or epoch + 1 == cfg.epochs
        keep = rank == 0 and (last or (epoch + 1) % cfg.checkpoint_every == 0)
        if keep:
            _evaluate_into(row, t, opts, last, threads, world)
        t.run.epochs.append(row)
        console.print(f"epoch {epoch + 1}/{cfg.epochs} step {step}: loss {row.get('loss', float('nan')):.3f}"
                      + (f"  AP {row['AP']:.3f} AP50 {row['AP50']:.3f} AP_small {row['AP_small']:.3f}"
                         if "AP" in row else "") + f"  [{row['time_s']:.0f} s]")
        if keep:
            _save(out / CHECKPOINT_NAME, cfg, t, epoch + 1, step)
        _barrier(world)
        if stopped:
            console.print(f"stopped after {opts.max_minutes} min (time budget)")
            break
    t.run.wall_time_s = time.perf_counter() - t0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "metrics.json", t.run.to_json())
        if t.run.epochs:
            plot_training_curve(_curve(t.run), out)
    return t.run


def _load_resume(cfg: TrainConfig, path: Path) -> dict[str, Any]:
    saved = load_checkpoint(path)
    _check_resumable(cfg, saved, path)
    return saved


def _build(cfg: TrainConfig, opts: DetectionOptions, saved: dict[str, Any] | None, rank: int, world: int,
           threads: int) -> _Trainee:
    """Data (rank 0 generates a missing synthetic set before the others read it), model,
    optimiser, run record; restored from `saved` when resuming."""
    if rank != 0:
        _barrier(world)
    train_ds, val_ds = load_datasets(cfg, augment=opts.augment)
    if rank == 0:
        _barrier(world)
    if saved is not None:
        options = saved["model_options"]
    elif opts.model_options is not None:
        options = dict(opts.model_options)
    else:
        options = default_model_options(cfg.model, cfg.img_size)
    model = build_detector(cfg.model, train_ds.num_classes, options)
    if opts.backbone_layer_scale is not None and saved is None:
        set_layer_scale(model.backbone, opts.backbone_layer_scale)
    optimizer = adamw(param_groups(model, cfg.weight_decay), cfg.lr)
    run = DetectionRun(cfg.model, cfg.data, threads=threads, model_options=options, processes=world)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        run.epochs = list(saved["history"])
        set_rng_state(saved["rng"])
        if "py_rng" in saved:  # checkpoints written before the RNG state held Python's
            random.setstate(_py_state(saved["py_rng"]))
    net = model
    if world > 1:  # some ASAG heads see no input in a step (no probed patches): unused parameters
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    takes_targets = "targets" in inspect.signature(model.forward).parameters
    return _Trainee(model, net, optimizer, train_ds, val_ds, run, options, takes_targets)


def _train_epoch(t: _Trainee, cfg: TrainConfig, opts: DetectionOptions, epoch: int, step: int, total_steps: int,
                 steps_per_epoch: int, budget: BudgetScheduler, rank: int, world: int, console: Console,
                 t0: float) -> tuple[int, int, dict[str, float], int]:
    """One epoch (or until the schedule or budget ends): (step, total steps, loss sums, steps)."""
    t.model.train()
    global_batch = cfg.batch_size * world
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    order = torch.randperm(len(t.train_ds), generator=g).tolist()
    sums: dict[str, float] = {}
    n = 0
    for b in range(steps_per_epoch):
        first = b * global_batch + rank * cfg.batch_size
        batch = [t.train_ds[i] for i in order[first:first + cfg.batch_size]]
        lr = cfg.lr * warmup_cosine(step, total_steps, warmup, final=0.01)
        losses = train_step(t, collate(batch), lr, cfg.clip_grad, f"epoch {epoch + 1}, step {step}")
        step, n = step + 1, n + 1
        for k in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
            if k in losses:
                sums[k] = sums.get(k, 0.0) + float(losses[k])
        if opts.log_every and step % opts.log_every == 0:
            console.print(f"  step {step}: loss {float(losses['loss']):.3f} [{time.perf_counter() - t0:.0f} s wall, "
                          f"{budget.now() - budget.c0:.0f} s {opts.clock}]")
        total_steps, out_of_time = budget.update(step, total_steps, steps_per_epoch * cfg.epochs, console)
        if out_of_time:
            total_steps = step
        if step >= total_steps:
            break
    return step, total_steps, sums, n


def train_step(t: _Trainee, batch: tuple, lr: float, clip_grad: float, where: str) -> dict[str, Tensor]:
    """One optimiser step on a collated batch (images, masks, targets) at learning rate `lr`;
    returns the loss terms, detached."""
    images, masks, targets = batch
    for gr in t.optimizer.param_groups:
        gr["lr"] = lr
    outputs = t.net(images, masks, targets) if t.takes_targets else t.net(images, masks)
    losses = t.model.loss(outputs, targets)
    loss = losses["loss"]
    if not math.isfinite(loss.item()):
        raise EdgedetError(f"loss became {loss.item()} at {where}: lower --lr or check the data")
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        nn.utils.clip_grad_norm_(t.model.parameters(), clip_grad)
    t.optimizer.step()
    return {k: v.detach() if isinstance(v, Tensor) else v for k, v in losses.items()}


def _evaluate_into(row: dict[str, Any], t: _Trainee, opts: DetectionOptions, last: bool, threads: int,
                   world: int) -> None:
    """COCO mAP on the validation set into the epoch's row (and the run's final figures)."""
    n_eval = opts.eval_max_images if last or opts.curve_eval_images is None else opts.curve_eval_images
    torch.set_num_threads(threads * world)  # the other ranks wait meanwhile
    m = evaluate(t.model, t.val_ds, batch_size=8, max_images=n_eval)
    torch.set_num_threads(threads)
    row.update({k: m[k] for k in ("AP", "AP50", "AP_small")})
    if last:
        t.run.final = dict(m)


def _save(path: Path, cfg: TrainConfig, t: _Trainee, epoch: int, step: int) -> None:
    ds = t.train_ds
    save_checkpoint(path, {
        "config": cfg.to_dict(), "task": "detection", "model_name": cfg.model, "model_options": t.options,
        "num_classes": ds.num_classes, "class_names": ds.class_names, "label_to_cat": ds.label_to_cat,
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "epoch": epoch,
        "step": step, "history": t.run.epochs, "rng": rng_state()})


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _agree(fit: int, out_of_time: bool, world: int) -> tuple[int, bool]:
    """The smallest step estimate any rank proposes (that of the slowest; 0: none) and whether
    any rank is out of time: an all-reduce, so that all ranks schedule and stop alike."""
    if world == 1:
        return fit, out_of_time
    t = torch.tensor([-fit if fit else -(2**62), int(out_of_time)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return (0 if t[0] == -(2**62) else int(-t[0])), bool(t[1])


def _py_state(lst) -> tuple:
    return (int(lst[0]), tuple(int(v) for v in lst[1]), lst[2])


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    if saved.get("task") != "detection":
        raise EdgedetError(f"{path} is not a detection checkpoint")
    old = saved["config"]
    diff = [k for k in TrainConfig.RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise EdgedetError(f"cannot resume {path}: options differ from the checkpoint ({', '.join(diff)})")


def _curve(run: DetectionRun) -> Curve:
    """Training loss per epoch, and validation AP50 where it was evaluated."""
    loss = Panel("loss", "loss", [Series("train loss", [r["epoch"] for r in run.epochs],
                                         [r.get("loss", float("nan")) for r in run.epochs])])
    evals = [r for r in run.epochs if "AP50" in r]
    ap = Panel("val AP50", "AP50", [Series("val AP50", [r["epoch"] for r in evals], [r["AP50"] for r in evals])])
    return Curve(f"{run.model} on {run.data}", [loss, ap] if evals else [loss])


def load_trained(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a detector from a detection checkpoint; returns (model in eval mode, checkpoint)."""
    state = load_checkpoint(checkpoint)
    if state.get("task") != "detection":
        raise EdgedetError(f"{checkpoint} is not a detection checkpoint (train one with `edgedet train`)")
    model = build_detector(state["model_name"], int(state["num_classes"]), dict(state["model_options"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
