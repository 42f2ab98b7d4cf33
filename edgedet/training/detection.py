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
from torch import nn

from edgedet.data.coco import Augment, CocoDetection, collate, parse_data_spec
from edgedet.distributed import dist_setup
from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.io.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from edgedet.training.config import TrainConfig
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
        from edgedet.data.synthetic_det import SyntheticDetConfig, ensure_synthetic_coco

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
    from edgedet.models import create

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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(".bias") or "embed" in name.split(".")[-2:][0]
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this torch has one (CPU since 2.4): one pass over
    all parameters instead of ~10 ops each, ~5% of a small detector's step on one core."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, resume: bool = False, max_minutes: float | None = None,
          eval_max_images: int | None = None, clock: str = "wall", log_every: int = 0,
          model_options: dict[str, Any] | None = None,
          backbone_layer_scale: float | None = None,
          curve_eval_images: int | None = None, augment: bool = True) -> DetectionRun:
    """Train the detector `cfg.model`; evaluates COCO mAP on the validation set at the end
    (and at every checkpoint). `max_minutes` fits the cosine schedule into that budget
    (re-estimated as the run goes) and stops early (after a whole step), still evaluating and
    checkpointing; `clock` "wall" or "cpu" (this process's CPU time, for budgets on a shared
    machine). `log_every` > 0 prints the loss every that many steps. `model_options` replace
    `default_model_options` (e.g. a recipe's); `backbone_layer_scale` re-initialises the
    backbone blocks' layer-scale γ (a from-scratch recipe choice, see det_recipe);
    `curve_eval_images` caps the images of the intermediate (not the final) evaluations;
    `augment` False trains on the images as they are (no flip, resize or crop)."""
    from rich.console import Console

    rank, world = dist_setup()
    console = Console(stderr=True, quiet=rank != 0)
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    _seed_everything(cfg.seed)
    out = Path(cfg.out)
    if rank != 0:  # rank 0 generates the synthetic set (when missing) before the others read it
        _barrier(world)
    train_ds, val_ds = load_datasets(cfg, augment=augment)
    if rank == 0:
        _barrier(world)
    ckpt_path = out / "checkpoint.pt"
    options = dict(model_options) if model_options is not None else default_model_options(cfg.model,
                                                                                             cfg.img_size)
    saved = None
    if resume:
        saved = load_checkpoint(ckpt_path)
        _check_resumable(cfg, saved, ckpt_path)
        options = saved["model_options"]
    model = build_detector(cfg.model, train_ds.num_classes, options)
    if backbone_layer_scale is not None and saved is None:
        set_layer_scale(model.backbone, backbone_layer_scale)
    optimizer = adamw(param_groups(model, cfg.weight_decay), cfg.lr)
    takes_targets = "targets" in inspect.signature(model.forward).parameters
    global_batch = cfg.batch_size * world
    steps_per_epoch = max(1, len(train_ds) // global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    run = DetectionRun(cfg.model, cfg.data, threads=threads, model_options=options, processes=world)
    start_epoch, step = 0, 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch, step = int(saved["epoch"]), int(saved["step"])
        run.epochs = list(saved["history"])
        set_rng_state(saved["rng"])
        random.setstate(_py_state(saved["py_rng"]))
    net = model
    if world > 1:  # some ASAG heads see no input in a step (no probed patches): unused parameters
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    console.print(f"[bold]{cfg.model}[/] on {cfg.data}: {len(train_ds)} train / {len(val_ds)} val images, "
                  f"{train_ds.num_classes} classes, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
                  f"params, options {options}, {world} process(es) × {threads} thread(s), "
                  f"{global_batch} images per step")
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0, c0 = time.perf_counter(), now()
    deadline = None if max_minutes is None else c0 + 60.0 * max_minutes
    budget_share = 0.92  # of the remaining budget given to training steps (the rest: final evaluation)
    stopped = False
    start_step = step
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(train_ds), generator=g).tolist()
        sums: dict[str, float] = {}
        n = 0
        for b in range(steps_per_epoch):
            first = b * global_batch + rank * cfg.batch_size
            batch = [train_ds[i] for i in order[first:first + cfg.batch_size]]
            images, masks, targets = collate(batch)
            for gr in optimizer.param_groups:
                gr["lr"] = cfg.lr * warmup_cosine(step, total_steps, warmup, final=0.01)
            outputs = net(images, masks, targets) if takes_targets else net(images, masks)
            losses = model.loss(outputs, targets)
            loss = losses["loss"]
            if not math.isfinite(loss.item()):
                raise EdgedetError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}: "
                                   "lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            n += 1
            for k in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
                if k in losses:
                    sums[k] = sums.get(k, 0.0) + float(losses[k].detach())
            if log_every and step % log_every == 0:
                console.print(f"  step {step}: loss {float(loss.detach()):.3f} "
                              f"[{time.perf_counter() - t0:.0f} s wall, {now() - c0:.0f} s {clock}]")
            out_of_time = False
            if deadline is not None:
                fit = 0
                if (step - start_step) >= 10 and (step - start_step) % 25 == 10:
                    # fit the cosine schedule into the time budget, re-estimated as the run goes
                    # (the machine's load changes); a share of the budget is kept for evaluations
                    per_step = (now() - c0) / (step - start_step)
                    fit = step + int(budget_share * (deadline - now()) / max(per_step, 1e-9))
                    fit = max(min(fit, steps_per_epoch * cfg.epochs), step + 1)
                # every rank must take the same decisions: the slowest one's
                fit, out_of_time = _agree(fit, now() > deadline, world)
                if fit and fit != total_steps:
                    if step - start_step == 10:
                        console.print(f"time budget: schedule fitted to {fit} steps")
                    total_steps = fit
            if out_of_time or step >= total_steps:
                stopped = step < steps_per_epoch * cfg.epochs
                break
        row = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
               "time_s": time.perf_counter() - t0, "cpu_time_s": time.process_time(),
               **{k: v / max(n, 1) for k, v in sums.items()}}
        last = stopped or epoch + 1 == cfg.epochs
        if rank == 0 and (last or (epoch + 1) % cfg.checkpoint_every == 0):
            from edgedet.training.coco_eval import evaluate

            n_eval = eval_max_images if last or curve_eval_images is None else curve_eval_images
            torch.set_num_threads(threads * world)  # the other ranks wait meanwhile
            m = evaluate(model, val_ds, batch_size=8, max_images=n_eval)
            torch.set_num_threads(threads)
            row.update({k: m[k] for k in ("AP", "AP50", "AP_small")})
            if last:
                run.final = {k: v for k, v in m.items()}
        run.epochs.append(row)
        console.print(f"epoch {epoch + 1}/{cfg.epochs} step {step}: loss {row.get('loss', float('nan')):.3f}"
                      + (f"  AP {row['AP']:.3f} AP50 {row['AP50']:.3f} AP_small {row['AP_small']:.3f}"
                         if "AP" in row else "") + f"  [{row['time_s']:.0f} s]")
        if rank == 0 and (last or (epoch + 1) % cfg.checkpoint_every == 0):
            save_checkpoint(ckpt_path, {
                "config": cfg.to_dict(), "task": "detection", "model_name": cfg.model,
                "model_options": options, "num_classes": train_ds.num_classes,
                "class_names": train_ds.class_names, "label_to_cat": train_ds.label_to_cat,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                "step": step, "history": run.epochs, "rng": rng_state(),
                "py_rng": _py_state_to_list(random.getstate())})
        _barrier(world)
        if stopped:
            console.print(f"stopped after {max_minutes} min (time budget)")
            break
    run.wall_time_s = time.perf_counter() - t0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "metrics.json", run.to_json())
        _plot(run, out)
    return run


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _agree(fit: int, out_of_time: bool, world: int) -> tuple[int, bool]:
    """The smallest step estimate any rank proposes (that of the slowest; 0: none) and whether
    any rank is out of time: an all-reduce, so that all ranks schedule and stop alike."""
    if world == 1:
        return fit, out_of_time
    import torch.distributed as dist

    t = torch.tensor([-fit if fit else -(2**62), int(out_of_time)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return (0 if t[0] == -(2**62) else int(-t[0])), bool(t[1])


def _py_state_to_list(state) -> list:
    return [state[0], list(state[1]), state[2]]


def _py_state(lst) -> tuple:
    return (int(lst[0]), tuple(int(v) for v in lst[1]), lst[2])


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    if saved.get("task") != "detection":
        raise EdgedetError(f"{path} is not a detection checkpoint")
    old = saved["config"]
    diff = [k for k in TrainConfig.RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise EdgedetError(f"cannot resume {path}: options differ from the checkpoint ({', '.join(diff)})")


def _plot(run: DetectionRun, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run.epochs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [r["epoch"] for r in run.epochs]
    ax.plot(ep, [r.get("loss", float("nan")) for r in run.epochs], label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    evals = [r for r in run.epochs if "AP50" in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["epoch"] for r in evals], [r["AP50"] for r in evals], "o-", color="C1", label="val AP50")
        ax2.set_ylabel("AP50")
    ax.set_title(f"{run.model} on {run.data}")
    fig.tight_layout()
    tmp = out / ".training_curve.png.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out / "training_curve.png")


def load_trained(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a detector from a detection checkpoint; returns (model in eval mode, checkpoint)."""
    state = load_checkpoint(checkpoint)
    if state.get("task") != "detection":
        raise EdgedetError(f"{checkpoint} is not a detection checkpoint (train one with `edgedet train`)")
    model = build_detector(state["model_name"], int(state["num_classes"]), dict(state["model_options"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
