"""Training-curve PNG (DIR/training_curve.png): one panel per quantity, a line per series
(classification: loss and accuracy, train and validation; detection: loss and val AP50)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedet.io.atomic import atomic_output

CURVE_NAME = "training_curve.png"


@dataclass
class Series:
    label: str
    epochs: list[float]
    values: list[float]
    style: str = "o-"


@dataclass
class Panel:
    title: str
    ylabel: str
    series: list[Series]
    hline: tuple[float, str] | None = None  # (y, label), e.g. chance accuracy
    ylim: tuple[float, float] | None = None


@dataclass
class Curve:
    title: str
    panels: list[Panel] = field(default_factory=list)


def plot_training_curve(curve: Curve, out_dir: str | Path) -> Path:
    """Write DIR/training_curve.png (atomically) and return its path."""
    import matplotlib  # heavy, and only needed for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curve.panels), figsize=(5 * len(curve.panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], curve.panels, strict=True):
        for s in panel.series:
            ax.plot(s.epochs, s.values, s.style, label=s.label)
        if panel.hline is not None:
            ax.axhline(panel.hline[0], color="grey", ls="--", label=panel.hline[1])
        ax.set(xlabel="epoch", ylabel=panel.ylabel, title=panel.title)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(curve.title)
    fig.tight_layout()
    path = Path(out_dir) / CURVE_NAME
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
