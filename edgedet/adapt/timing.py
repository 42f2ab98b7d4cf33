"""What one adaptation step costs: measured here (median wall time, threads named) and
predicted on a device profile. The latency predictor prices inference graphs, so the step
is predicted as the predicted forward of the step's batch times the step/forward ratio
measured here (a backward through frozen weights is mostly input gradients)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from edgedet.adapt.aux_heads import AuxNet
from edgedet.adapt.norm_affine import freeze_for_adaptation
from edgedet.profiles import load_profile
from edgedet.profiles.predict import predict_module


@dataclass
class StepTime:
    measured_ms: float
    forward_ms: float  # forward of the step's batch, measured here
    threads: int
    predicted_ms: float
    predicted_forward_ms: float
    profile: str
    calibration_mape: float  # the profile's leave-one-out error

    def line(self) -> str:
        return (f"adaptation step: {self.measured_ms:.1f} ms measured here (median, {self.threads} "
                f"torch thread{'s' if self.threads != 1 else ''}); {self.predicted_ms:.1f} ms predicted on "
                f"{self.profile} (profile "
                f"calibration error {100 * self.calibration_mape:.1f}% MAPE; predicted forward "
                f"{self.predicted_forward_ms:.1f} ms × step/forward {self.measured_ms / self.forward_ms:.2f} "
                "measured here)")


def step_time(model: AuxNet, images: Tensor, profile: str = "cortex-a76", repeats: int = 5) -> StepTime:
    """Time `repeats` auxiliary-loss gradient steps (on a copy) and predict one on `profile`."""
    import copy

    model = copy.deepcopy(model)
    freeze_for_adaptation(model)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    views = model.aux.views(images, gen)
    batch = views[0].shape[0] * (len(views) if model.aux.kind == "byol" else 1)
    x = torch.cat(views) if model.aux.kind == "byol" else views[0]
    steps, fwd = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.autograd.grad(model(images, views), params)
        steps.append(time.perf_counter() - t0)
        with torch.no_grad():
            t0 = time.perf_counter()
            model.net(x)
            fwd.append(time.perf_counter() - t0)
    prof = load_profile(profile)
    pred = predict_module(model.net, (batch, *images.shape[1:]), prof)
    measured, forward = 1e3 * statistics.median(steps), 1e3 * statistics.median(fwd)
    return StepTime(measured, forward, torch.get_num_threads(), pred.latency_ms * measured / forward,
                    pred.latency_ms, prof.id, float(prof.calibration["mape"]))
