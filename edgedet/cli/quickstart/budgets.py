"""Budgets that bind: a budget between the smallest and largest architecture of the
quickstart's skeleton, at the position `nas.budget.TARGET_POSITION` of that range on a log
scale (0 = smallest, 1 = largest), so the search must trade ops away but can still reach
the big ones."""

from __future__ import annotations

import math
from typing import Any

from edgedet.nas.budget import TARGET_POSITION
from edgedet.nas.lut import build_lut, profile_cost, profile_source
from edgedet.nas.space import skeleton

SKELETON = "c16-d16"
INPUT_SIZE = 224


def binding_budget(profile: Any, num_classes: int = 10) -> dict[str, Any]:
    """{budget_ms, min_ms, max_ms, position, skeleton} for `profile` (a loaded profile)."""
    space = skeleton(SKELETON, input_size=INPUT_SIZE, num_classes=num_classes)
    lut = build_lut(space, profile_cost(profile), profile_source(profile))
    lo, hi = lut.min_ms, lut.max_ms
    budget = math.exp(math.log(lo) + TARGET_POSITION * (math.log(hi) - math.log(lo)))
    return {"budget_ms": float(f"{budget:.3g}"), "min_ms": lo, "max_ms": hi, "position": TARGET_POSITION,
            "skeleton": SKELETON, "input_size": INPUT_SIZE}
