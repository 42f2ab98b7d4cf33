"""The classification training loop behind `edgedet train` (and the quickstart).

AdamW (no weight decay on norms, biases and layer scales), linear warm-up then cosine
decay per step, gradient clipping, optional label smoothing, channels-last tensors,
evaluation every epoch. The data order of epoch e is a permutation drawn from a generator
seeded with (seed, e), and nothing else in the loop consumes randomness, so a run resumed
from its last checkpoint ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, Sampler

from edgedet import models
from edgedet.data import make_classification_data
from edgedet.errors import EdgedetError
from edgedet.io.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from edgedet.models.complexity import FLOPS_NOTE, count_flops, count_params
from edgedet.training.config import TrainConfig
from edgedet.training.metrics import EpochRecord, RunMetrics, epochs_from_state, epochs_to_state
from edgedet.training.optim import param_groups
from edgedet.training.plot import Curve, Panel, Series, plot_training_curve
from edgedet.training.schedule import WarmupCosine

DATA_SEED = 0  # the synthetic set and the folder val split do not change with --seed


class EpochPermutation(Sampler[int]):
    """A fresh permutation per epoch, a pure function of (seed, epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model of `cfg.model` with `num_classes` outputs, initialised from `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model, num_classes=num_classes)
    stride = getattr(model, "feature_strides", [1])[-1]
    if cfg.img_size < stride:
        raise EdgedetError(f"--img-size {cfg.img_size} is smaller than the model's total stride {stride}")
    return model


def _to_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, channels_last: bool = True) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy over a loader."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        logits = model(_to_input(x, channels_last))
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    return loss_sum / max(n, 1), correct / max(n, 1)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None,
          console: Any = None) -> RunMetrics:
    """Train (or resume) a classifier into `cfg.out`; `stop_after` ends after that many
    epochs in total, as an interruption would (the checkpoint lets `resume` continue)."""
    cfg.validate()
    console = console or Console()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT_NAME
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        _check_resumable(cfg, state["config"], ckpt_path)

    data = make_classification_data(cfg.data, cfg.img_size, seed=DATA_SEED, train_size=cfg.train_size,
                                    val_size=cfg.val_size)
    if len(data.train) < cfg.batch_size:
        raise EdgedetError(f"--batch-size {cfg.batch_size} exceeds the {len(data.train)} training images")
    model = build_model(cfg, data.num_classes)
    metrics = RunMetrics(
        model=cfg.model, task="classification", data=data.source, num_classes=data.num_classes,
        img_size=cfg.img_size, params=count_params(model),
        gflops=round(count_flops(model, cfg.img_size) / 1e9, 5),
        gflops_224=round(count_flops(model, 224) / 1e9, 5),
        threads=torch.get_num_threads(), config=cfg.to_dict(), torch_version=torch.__version__,
        flops_note=FLOPS_NOTE,
    )
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)

    sampler = EpochPermutation(len(data.train), cfg.seed)
    train_loader = DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    val_loader = DataLoader(data.val, batch_size=max(cfg.batch_size, 128), shuffle=False)
    steps = len(train_loader)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    schedule = WarmupCosine(optimizer, cfg.epochs * steps, round(cfg.warmup_epochs * steps))

    start_epoch, wall_before = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        start_epoch, wall_before = int(state["epoch"]), float(state["wall_time_s"])
        metrics.epochs = epochs_from_state(state["history"])
        console.print(f"resuming {cfg.model} from {ckpt_path} after epoch {start_epoch}/{cfg.epochs}")
    elif ckpt_path.exists():
        console.print(f"[yellow]note:[/] starting afresh; {ckpt_path} will be overwritten "
                      "(use --resume to continue)")

    console.print(f"training {cfg.model} ({metrics.params / 1e6:.3f} M params, {metrics.gflops:.4f} GFLOPs "
                  "at "
                  f"{cfg.img_size}²) on {data.source}: {len(data.train)} train / {len(data.val)} val images, "
                  f"{data.num_classes} classes, {torch.get_num_threads()} threads")
    t_run = time.perf_counter()
    last_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss, train_acc = _train_epoch(model, train_loader, optimizer, schedule, cfg, epoch, console)
        val_loss, val_acc = evaluate(model, val_loader, cfg.channels_last)
        rec = EpochRecord(epoch + 1, train_loss, train_acc, val_loss, val_acc, schedule.lr,
                          time.perf_counter() - t0)
        metrics.epochs.append(rec)
        metrics.wall_time_s = wall_before + time.perf_counter() - t_run
        console.print(f"epoch {rec.epoch}/{cfg.epochs}  train loss {train_loss:.4f} acc "
                      f"{100 * train_acc:.1f}%  val loss {val_loss:.4f} acc {100 * val_acc:.1f}%  "
                      f"lr {rec.lr:.2e}  {rec.seconds:.1f} s")
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs or epoch + 1 == last_epoch:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "rng": rng_state(), "epoch": epoch + 1,
                "config": cfg.to_dict(), "history": epochs_to_state(metrics.epochs),
                "wall_time_s": metrics.wall_time_s,
            })
        metrics.save(out)
        plot_training_curve(_curve(metrics.epochs, f"{cfg.model} on {cfg.data}", 1.0 / data.num_classes), out)
    metrics.model_state = model.state_dict()  # for callers (tests, quickstart); not written to JSON
    return metrics


def _curve(epochs: list[EpochRecord], title: str, chance: float) -> Curve:
    """Loss and top-1 accuracy per epoch, train and validation, with the chance line."""
    xs = [e.epoch for e in epochs]
    loss = Panel("loss", "cross-entropy loss", [Series("train", xs, [e.train_loss for e in epochs]),
                                                Series("val", xs, [e.val_loss for e in epochs], "s-")])
    acc = Panel("accuracy", "top-1 accuracy (%)", [Series("train", xs, [100 * e.train_acc for e in epochs]),
                                                   Series("val", xs, [100 * e.val_acc for e in epochs], "s-")],
                hline=(100 * chance, "chance"), ylim=(0, 100))
    return Curve(title, [loss, acc])


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 schedule: WarmupCosine, cfg: TrainConfig, epoch: int, console: Any) -> tuple[float, float]:
    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    columns = (TextColumn(f"epoch {epoch + 1}/{cfg.epochs}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=len(loader), loss=float("nan"))
        for x, y in loader:
            logits = model(_to_input(x, cfg.channels_last))
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * y.numel()
            correct += (logits.detach().argmax(1) == y).sum().item()
            n += y.numel()
            progress.update(task, advance=1, loss=loss_sum / n)
    return loss_sum / n, correct / n


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    for key in TrainConfig.RESUME_KEYS:
        if key in saved and saved[key] != getattr(cfg, key):
            raise EdgedetError(f"cannot resume from {path}: --{key.replace('_', '-')} was {saved[key]!r} "
                               f"in the checkpoint, now {getattr(cfg, key)!r}")
