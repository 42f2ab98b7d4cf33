"""`edgedet train MODEL`: train a classifier (or, through the task table, a detector)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import typer

from edgedet.errors import EdgedetError

# Model-name prefix → module with `train(cfg: TrainConfig, resume: bool)`. First match wins;
# anything else is a classifier.
TASK_TRAINERS: tuple[tuple[str, str], ...] = (
    ("plain-detr-", "edgedet.training.detection"),
    ("asag-", "edgedet.training.detection"),
)
CLASSIFY_TRAINER = "edgedet.training.classify"


def trainer_module(model: str) -> str:
    """The training module for a model name (see TASK_TRAINERS)."""
    for prefix, module in TASK_TRAINERS:
        if model.startswith(prefix):
            return module
    return CLASSIFY_TRAINER


def _load_trainer(module: str, model: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise EdgedetError(f"training {model} needs {module}, which this version of edgedet does not "
                           "have yet") from None


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        model: str = typer.Argument(..., help="Model name (see `edgedet models`) or quadranet-arch:PATH."),
        data: str = typer.Option("synthetic", "--data", help="'synthetic' or PATH/<class>/<images>."),
        epochs: int = typer.Option(10, "--epochs", help="Number of epochs."),
        batch_size: int = typer.Option(64, "--batch-size", help="Images per optimizer step "
                                        "(per process when detectors train under torchrun)."),
        img_size: int = typer.Option(None, "--img-size",
                                     help="Input size [64 synthetic, 224 folder]."),
        lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
        out: Path = typer.Option(None, "--out", help="Run folder (default: runs/train/<model>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
        seed: int = typer.Option(0, "--seed", help="Seed of initialisation and data order."),
        label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Label smoothing in [0, 1)."),
        warmup_epochs: float = typer.Option(1.0, "--warmup-epochs", help="Linear warm-up length (epochs)."),
        weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay."),
        threads: int = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's)."),
        checkpoint_every: int = typer.Option(1, "--checkpoint-every", help="Checkpoint every N epochs."),
        train_size: int = typer.Option(5000, "--train-size", help="Synthetic data: training images."),
        val_size: int = typer.Option(1000, "--val-size", help="Synthetic data: validation images."),
    ) -> None:
        """Train MODEL and write checkpoint.pt, metrics.json and training_curve.png into OUT."""
        from edgedet.training.config import TrainConfig

        if img_size is None:
            img_size = 64 if data == "synthetic" else 224
        if out is None:
            out = Path("runs/train") / model.replace(":", "_").replace("/", "_")
        cfg = TrainConfig(
            model=model, data=data, out=str(out), epochs=epochs, batch_size=batch_size, img_size=img_size,
            lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
            seed=seed,
            threads=threads, checkpoint_every=checkpoint_every, train_size=train_size, val_size=val_size,
        )
        cfg.validate()
        if out.exists() and not out.is_dir():
            raise EdgedetError(f"--out {out} exists and is not a folder")
        module = trainer_module(model)
        if module == CLASSIFY_TRAINER and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise EdgedetError("data-parallel training (torchrun) is implemented for detectors and "
                               "`edgedet search`; train classifiers in one process")
        trainer = _load_trainer(module, model)
        result = trainer.train(cfg, resume=resume)
        if module == CLASSIFY_TRAINER:
            _print_summary(result, out)

    return None


def _print_summary(metrics, out: Path) -> None:
    from rich.console import Console

    d = metrics.to_json()
    acc = d["final_val_acc"]
    if acc is None:
        return
    Console().print(
        f"[bold]{d['model']}[/]: val top-1 {100 * acc:.1f}% (chance {100 * d['chance_acc']:.1f}%), "
        f"{d['params'] / 1e6:.3f} M params, {d['gflops_224']:.3f} GFLOPs at 224² "
        f"({d['gflops']:.4f} at {d['img_size']}²), {d['wall_time_s']:.0f} s on {d['threads']} threads\n"
        f"wrote {out}/checkpoint.pt, {out}/metrics.json, {out}/training_curve.png"
    )
