"""Learning-rate schedule: linear warm-up, then cosine decay to `final` × the base rate.

A pure function of the optimizer step, so a resumed run needs only the step count.
"""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets each param group's lr from `warmup_cosine` before every optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                 final: float = 0.0):
        self.optimizer, self.total_steps = optimizer, total_steps
        self.warmup_steps, self.final = warmup_steps, final
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        f = warmup_cosine(self.step_count, self.total_steps, self.warmup_steps, self.final)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "final": self.final, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, d: dict) -> None:
        self.step_count, self.total_steps = int(d["step_count"]), int(d["total_steps"])
        self.warmup_steps, self.final = int(d["warmup_steps"]), float(d["final"])
        self.base_lrs = list(d["base_lrs"])
        self._apply()
