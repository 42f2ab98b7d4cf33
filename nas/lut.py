"""Latency look-up table of a search space and its differentiable expectation.

LUT[l][i] is the latency of choice i at searchable layer l, priced at the *deployment*
input size by a device profile (predicted or measured); identity costs 0. The parts no
choice touches (stem, downsamples, head) are one fixed term. With p_l = softmax(α_l):

    E[lat] = fixed + Σ_l Σ_i p_l,i · LUT[l][i]

which stays in the autograd graph, so ∂E/∂α_l,i = p_l,i · (LUT[l][i] − E_l).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgedet.errors import EdgedetError
from edgedet.io.atomic import write_json_atomic
from edgedet.models.skeleton import MacroNet
from edgedet.nas.space import SearchSpace, build_block
from edgedet.profiles import predict_module

LUT_VERSION = 1  # bump when block definitions change, to invalidate persisted block costs

# latency in ms of `module` on an input of shape (N, C, H, W)
ModuleCost = Callable[[nn.Module, tuple[int, int, int, int]], float]


@dataclass
class LatencyTable:
    fixed_ms: float
    table: list[list[float]]
    source: dict[str, Any] = field(default_factory=dict)

    def expected(self, alphas: Sequence[Tensor]) -> Tensor:
        """E[lat] in ms under p = softmax(α) per layer, differentiable in α."""
        if len(alphas) != len(self.table):
            raise ValueError(f"{len(alphas)} α vectors for {len(self.table)} layers")
        total = alphas[0].new_tensor(self.fixed_ms)
        for a, row in zip(alphas, self.table, strict=True):
            total = total + (torch.softmax(a, dim=0) * a.new_tensor(row)).sum()
        return total

    def latency(self, indices: Sequence[int]) -> float:
        """Latency of one architecture given its choice index per layer."""
        return self.fixed_ms + sum(row[i] for row, i in zip(self.table, indices, strict=True))

    def min_indices(self) -> list[int]:
        return [min(range(len(r)), key=r.__getitem__) for r in self.table]

    def max_indices(self) -> list[int]:
        return [max(range(len(r)), key=r.__getitem__) for r in self.table]

    @property
    def min_ms(self) -> float:
        return self.latency(self.min_indices())

    @property
    def max_ms(self) -> float:
        return self.latency(self.max_indices())

    def to_json(self) -> dict[str, Any]:
        return {"fixed_ms": self.fixed_ms, "table": self.table, "source": self.source}


class BlockCostCache:
    """Memoises block latencies by (block type, choice, width, H, W): layers share them.

    With a cost that names itself (`cache_key`, e.g. a profile's id + content hash) the
    memo also persists as JSON under $EDGEDET_CACHE (default ~/.cache/edgedet/lut), so
    later searches on the same profile skip the predictions; EDGEDET_CACHE=off disables it.
    """

    def __init__(self, cost: ModuleCost):
        self.cost = cost
        # a cost may price blocks apart from whole networks (without per-inference overhead)
        self.block_cost: ModuleCost = getattr(cost, "block", cost)
        self.memo: dict[tuple, float] = {}
        self.store = _store_path(getattr(cost, "cache_key", None))
        if self.store is not None and self.store.is_file():
            try:
                for k, v in json.loads(self.store.read_text()).items():
                    self.memo[tuple(json.loads(k))] = float(v)
            except (OSError, ValueError, TypeError):
                self.memo = {}

    def save(self) -> None:
        if self.store is None:
            return
        try:
            items = sorted(self.memo.items(), key=str)
            write_json_atomic(self.store, {json.dumps(list(k)): v for k, v in items})
        except OSError:
            pass  # a cache that cannot be written is only slower

    def block(self, block_type: str, choice, width: int, side: int) -> float:
        if choice is None:
            return 0.0
        key = (block_type, choice.kernel, choice.expansion, width, side, side)
        if key not in self.memo:
            blk = build_block(block_type, width, choice).eval()
            self.memo[key] = float(self.block_cost(blk, (1, width, side, side)))
        return self.memo[key]

    def fixed(self, space: SearchSpace) -> float:
        key = ("fixed", *space.widths, space.input_size, space.num_classes)
        if key not in self.memo:
            shape = (1, 3, space.input_size, space.input_size)
            self.memo[key] = float(self.cost(skeleton_net(space).eval(), shape))
        return self.memo[key]


def _store_path(key: str | None) -> Path | None:
    root = os.environ.get("EDGEDET_CACHE", "")
    if key is None or root.lower() in ("off", "0", "none"):
        return None
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "edgedet"
    return base / "lut" / f"{key}.json"


def skeleton_net(space: SearchSpace) -> nn.Module:
    """Stem, downsamples and head of the space with every searchable layer removed."""
    return MacroNet(list(space.widths), [[] for _ in space.widths], num_classes=space.num_classes)


def build_lut(space: SearchSpace, cost: ModuleCost | BlockCostCache,
              source: dict | None = None) -> LatencyTable:
    """Price every (layer, choice) of `space` at its deployment input size."""
    cache = cost if isinstance(cost, BlockCostCache) else BlockCostCache(cost)
    for s in range(len(space.widths)):
        if space.stage_resolution(s) < 1:
            raise EdgedetError(f"input size {space.input_size} is too small for a 4-stage skeleton "
                               f"(stride 32); use ≥ 32")
    table = [
        [cache.block(space.block, c, space.widths[s], space.stage_resolution(s))
         for c in space.layer_choices(s, i)]
        for s, i in space.layers()
    ]
    src = {"input_size": space.input_size, **(source or {})}
    cache.save()
    return LatencyTable(fixed_ms=cache.fixed(space), table=table, source=src)


class ProfileCost:
    """Latency predicted by `edgedet.profiles.predict_module` on a device profile: a whole
    network includes the runtime's per-inference cost, a block only its kernels."""

    def __init__(self, profile: Any):
        self.profile = profile
        doc = json.dumps(getattr(profile, "doc", None) or {}, sort_keys=True)
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("edgedet")
        except PackageNotFoundError:
            ver = "dev"
        # the profile's content and the package version name the persistent block cache
        digest = hashlib.sha256(f"{doc}|{ver}|{LUT_VERSION}".encode()).hexdigest()[:16]
        self.cache_key = f"{getattr(profile, 'id', 'profile')}-{digest}"

    def __call__(self, module: nn.Module, shape: tuple[int, int, int, int]) -> float:
        return float(predict_module(module, shape, self.profile).latency_ms)

    def block(self, module: nn.Module, shape: tuple[int, int, int, int]) -> float:
        return float(predict_module(module, shape, self.profile).kernel_ms)


def profile_cost(profile: Any) -> ProfileCost:
    return ProfileCost(profile)


def profile_source(profile: Any) -> dict[str, Any]:
    """What arch.json records about the profile that priced the LUT."""
    cal = getattr(profile, "calibration", None) or {}
    rt = getattr(profile, "runtime", None)
    return {"id": getattr(profile, "id", None), "kind": getattr(profile, "kind", None),
            "runtime": rt.get("name") if isinstance(rt, dict) else rt,
            "calibration": {k: cal[k] for k in ("mape", "within10", "method") if k in cal}}
