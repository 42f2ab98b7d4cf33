"""metrics.json of a training run: per-epoch curves and the run's summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedet.io.atomic import write_json_atomic

METRICS_SCHEMA_VERSION = 1
METRICS_NAME = "metrics.json"


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float  # learning rate at the end of the epoch
    seconds: float  # wall time of this epoch (training + evaluation)


@dataclass
class RunMetrics:
    model: str
    task: str
    data: str
    num_classes: int
    img_size: int
    params: int
    gflops: float  # one forward pass, batch 1, at img_size
    gflops_224: float  # the same at 224×224, for comparison with `edgedet models`
    threads: int
    config: dict[str, Any]
    epochs: list[EpochRecord] = field(default_factory=list)
    wall_time_s: float = 0.0  # summed over all (resumed) runs
    torch_version: str = ""
    flops_note: str = ""

    @property
    def final_val_acc(self) -> float | None:
        return self.epochs[-1].val_acc if self.epochs else None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = METRICS_SCHEMA_VERSION
        d["chance_acc"] = 1.0 / self.num_classes
        d["final_val_acc"] = self.final_val_acc
        d["best_val_acc"] = max((e.val_acc for e in self.epochs), default=None)
        d["epochs_done"] = len(self.epochs)
        return d

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / METRICS_NAME
        write_json_atomic(path, self.to_json())
        return path


def epochs_to_state(epochs: list[EpochRecord]) -> list[dict[str, float]]:
    """Plain dicts for a weights_only checkpoint."""
    return [asdict(e) for e in epochs]


def epochs_from_state(rows: list[dict[str, float]]) -> list[EpochRecord]:
    return [EpochRecord(**{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()}) for r in rows]
