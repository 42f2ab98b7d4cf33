"""Training-curve PNG: loss and accuracy per epoch, train and validation."""

from __future__ import annotations

from pathlib import Path

from edgedet.io.atomic import atomic_output
from edgedet.training.metrics import EpochRecord

CURVE_NAME = "training_curve.png"


def plot_training_curve(epochs: list[EpochRecord], out_dir: str | Path, title: str,
                        chance: float | None = None) -> Path:
    """Write DIR/training_curve.png (atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [e.epoch for e in epochs]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(xs, [e.train_loss for e in epochs], "o-", label="train")
    ax_loss.plot(xs, [e.val_loss for e in epochs], "s-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(xs, [100 * e.train_acc for e in epochs], "o-", label="train")
    ax_acc.plot(xs, [100 * e.val_acc for e in epochs], "s-", label="val")
    if chance is not None:
        ax_acc.axhline(100 * chance, color="grey", ls="--", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(out_dir) / CURVE_NAME
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
