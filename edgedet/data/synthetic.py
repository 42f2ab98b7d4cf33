"""Procedural shapes-and-textures classification data (`--data synthetic`).

Each image is generated from (seed, index) alone, at any resolution, with no files: one
large shape or texture patch of the labelled class, drawn over a tinted gradient background
with a few smaller distractors of *other* classes, random colours, scale, position,
rotation and pixel noise. The label is `index % num_classes`, so every index range is
class-balanced. Shapes are drawn from signed distance fields in shape-local coordinates,
with a one-pixel soft edge, so they look the same at every resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES = (
    "circle", "ring", "square", "triangle", "cross", "star",
    "stripes-h", "stripes-v", "checker", "dots",
)
# Textures whose identity depends on orientation keep their rotation small.
_ORIENTED = {"stripes-h", "stripes-v"}
MEAN, STD = 0.5, 0.25


def _sdf(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signed distance (negative inside, in units of the shape radius) of one class."""
    r = np.hypot(u, v)
    if kind == "circle":
        return r - 1.0
    if kind == "ring":
        return np.abs(r - 0.75) - rng.uniform(0.14, 0.24)
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if kind == "triangle":
        edges = [np.cos(a) * u + np.sin(a) * v - 0.5 for a in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6)]
        return np.maximum.reduce(edges) * 1.2
    if kind == "cross":
        arm = rng.uniform(0.22, 0.34)
        bar_h = np.maximum(np.abs(u) - 0.95, np.abs(v) - arm)
        bar_v = np.maximum(np.abs(v) - 0.95, np.abs(u) - arm)
        return np.minimum(bar_h, bar_v)
    if kind == "star":
        theta = np.arctan2(v, u)
        radius = 0.42 + 0.58 * ((np.cos(5 * theta) + 1) / 2) ** 2
        return (r - radius) * 0.7
    # Textures fill a square patch.
    patch = np.maximum(np.abs(u), np.abs(v)) - 0.9
    freq = rng.uniform(2.0, 3.2)  # periods across the patch radius
    if kind == "stripes-h":
        inner = (np.abs((v * freq) % 1.0 - 0.5) - 0.25) / freq
    elif kind == "stripes-v":
        inner = (np.abs((u * freq) % 1.0 - 0.5) - 0.25) / freq
    elif kind == "checker":
        inner = -np.sin(np.pi * freq * u) * np.sin(np.pi * freq * v) / (np.pi * freq)
    elif kind == "dots":
        du, dv = (u * freq) % 1.0 - 0.5, (v * freq) % 1.0 - 0.5
        inner = (np.hypot(du, dv) - 0.3) / freq
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return np.maximum(patch, inner)


def _colour(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: float = 0.45) -> np.ndarray:
    """A random RGB colour at least `min_dist` away from every colour in `avoid`."""
    best, best_d = None, -1.0
    for _ in range(20):
        c = rng.uniform(0.0, 1.0, 3)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1.0)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _draw(img: np.ndarray, kind: str, cx: float, cy: float, radius: float, angle: float,
          colour: np.ndarray, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> None:
    """Alpha-blend one shape (centre and radius in pixels) into img (H,W,3) in place."""
    ys, xs = grid
    ca, sa = np.cos(angle), np.sin(angle)
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    alpha = np.clip(0.5 - _sdf(kind, u, v, rng) * radius, 0.0, 1.0)[..., None]
    img *= 1.0 - alpha
    img += alpha * colour


@dataclass(frozen=True)
class SyntheticSpec:
    """What the generator varies; the defaults are tuned to be learnable but not trivial."""

    num_classes: int = len(CLASSES)
    distractors: tuple[int, int] = (0, 2)  # inclusive range
    scale: tuple[float, float] = (0.25, 0.42)  # main shape radius / image size
    distractor_scale: tuple[float, float] = (0.3, 0.55)  # relative to the main shape
    noise: tuple[float, float] = (0.02, 0.08)  # Gaussian pixel noise std


def render(index: int, size: int, seed: int = 0,
           spec: SyntheticSpec = SyntheticSpec()) -> tuple[np.ndarray, int]:
    """Image (size,size,3) float32 in [0,1] and label of sample `index`."""
    if not 1 <= spec.num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(CLASSES)}")
    rng = np.random.default_rng([seed, index])
    label = index % spec.num_classes
    kind = CLASSES[label]
    grid = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    bg0 = rng.uniform(0.0, 1.0, 3)
    bg1 = np.clip(bg0 + rng.normal(0.0, 0.2, 3), 0.0, 1.0)
    t = (np.cos(rng.uniform(0, 2 * np.pi)) * grid[1] + np.sin(rng.uniform(0, 2 * np.pi)) * grid[0]) / size
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = (bg0 * (1 - t[..., None]) + bg1 * t[..., None]).astype(np.float32)
    used = [bg0, bg1]

    radius = rng.uniform(*spec.scale) * size
    cx, cy = rng.uniform(radius, size - radius, 2) if size > 2 * radius else (size / 2, size / 2)
    others = [c for c in CLASSES[: spec.num_classes] if c != kind] or [kind]
    for _ in range(rng.integers(spec.distractors[0], spec.distractors[1] + 1)):
        dk = others[rng.integers(len(others))]
        dr = radius * rng.uniform(*spec.distractor_scale)
        dx, dy = rng.uniform(0, size, 2)
        col = _colour(rng, used)
        _draw(img, dk, dx, dy, dr, _angle(dk, rng), col, rng, grid)
        used.append(col)
    _draw(img, kind, cx, cy, radius, _angle(kind, rng), _colour(rng, used), rng, grid)
    img += rng.normal(0.0, rng.uniform(*spec.noise), img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0), label


def _angle(kind: str, rng: np.random.Generator) -> float:
    if kind in _ORIENTED:
        return float(rng.uniform(-0.25, 0.25))
    return float(rng.uniform(0, 2 * np.pi))


class SyntheticShapes(Dataset):
    """Samples `start .. start+length-1` of the procedural set, as normalised CHW tensors.

    Train and validation splits are disjoint index ranges of the same generator; `cache`
    keeps generated images (uint8) in memory so later epochs skip the drawing.
    """

    def __init__(self, length: int, size: int, start: int = 0, seed: int = 0,
                 spec: SyntheticSpec = SyntheticSpec(), cache: bool = True):
        if length <= 0 or size <= 0 or start < 0:
            raise ValueError("length and size must be positive and start non-negative")
        self.length, self.size, self.start, self.seed, self.spec = length, size, start, seed, spec
        self.classes = list(CLASSES[: spec.num_classes])
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def _image_u8(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img, _ = render(self.start + i, self.size, self.seed, self.spec)
        u8 = np.round(img * 255).astype(np.uint8)
        if self._cache is not None:
            self._cache[i] = u8
        return u8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        x = torch.from_numpy(self._image_u8(i)).permute(2, 0, 1).float().div_(255.0)
        return (x - MEAN) / STD, (self.start + i) % self.spec.num_classes
