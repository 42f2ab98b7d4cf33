"""The configuration of one training run, shared by the classification and detection loops."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from edgedet.errors import EdgedetError


@dataclass
class TrainConfig:
    """Everything that determines a run's result; stored in every checkpoint."""

    model: str
    data: str = "synthetic"
    out: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    img_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    clip_grad: float = 5.0
    seed: int = 0
    threads: int | None = None
    checkpoint_every: int = 1
    channels_last: bool = True
    train_size: int = 5000  # synthetic data only
    val_size: int = 1000  # synthetic data only

    # Fields a resumed run must share with the checkpoint (the rest may change).
    RESUME_KEYS = ("model", "data", "epochs", "batch_size", "img_size", "lr", "weight_decay",
                   "warmup_epochs", "label_smoothing", "clip_grad", "seed", "channels_last",
                   "train_size", "val_size")

    def validate(self) -> None:
        """Raise EdgedetError naming the first bad option."""
        for name in ("epochs", "batch_size", "img_size", "checkpoint_every", "train_size", "val_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise EdgedetError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("lr", "clip_grad"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise EdgedetError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise EdgedetError(f"--weight-decay must be ≥ 0, got {self.weight_decay!r}")
        if not math.isfinite(self.warmup_epochs) or self.warmup_epochs < 0:
            raise EdgedetError(f"--warmup-epochs must be ≥ 0, got {self.warmup_epochs!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise EdgedetError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.threads is not None and self.threads <= 0:
            raise EdgedetError(f"--threads must be a positive integer, got {self.threads!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
