"""Synthetic multi-domain classification data: the procedural shapes of `synthetic.py`
seen through a *domain*, a fixed composition of image shifts (colour cast, blur, sensor
noise, an overlaid texture, contrast/brightness, JPEG compression).

Source domains are for training; target domains are held out (other strengths and other
variants of the same kinds of shift), never seen in training, and are what test-time
adaptation is scored on. Every image is a pure function of (seed, domain, index): the
shape comes from `render(index, size, seed)`, the random part of a shift (noise) from a
generator seeded with (seed, domain, index).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from edgedet.data.synthetic import CLASSES, MEAN, STD, SyntheticSpec, render
from edgedet.errors import EdgedetError

SHIFT_KINDS = ("colour", "blur", "noise", "texture", "contrast", "jpeg")
# The base images: at most one distractor and little pixel noise, so that small nets learn
# the classes at 32² in a few epochs and what remains hard is the domain shift.
BASE_SPEC = SyntheticSpec(distractors=(0, 1), noise=(0.01, 0.03))


@dataclass(frozen=True)
class Shift:
    """One image shift; `params` depend on the kind (see `apply_shift`)."""

    kind: str
    params: tuple[float, ...]


@dataclass(frozen=True)
class Domain:
    name: str
    shifts: tuple[Shift, ...]
    source: bool  # True: a training domain; False: held out for adaptation


def _d(name: str, source: bool, *shifts: tuple[str, tuple[float, ...]]) -> Domain:
    return Domain(name, tuple(Shift(k, p) for k, p in shifts), source)


DOMAINS: dict[str, Domain] = {d.name: d for d in (
    # Source domains: mild shifts of every kind, and the clean images.
    _d("clean", True),
    _d("colour-warm", True, ("colour", (1.25, 1.0, 0.7, 0.05, 0.0, -0.05))),
    _d("blur-soft", True, ("blur", (0.8,))),
    _d("noise-low", True, ("noise", (0.07,))),
    _d("texture-grating", True, ("texture", (0.12, 4.0, 0.0))),
    _d("contrast-low", True, ("contrast", (0.6, 0.1))),
    _d("jpeg-mid", True, ("jpeg", (35,))),
    # Held-out target domains: other strengths / variants, never seen in training.
    _d("colour-cool", False, ("colour", (0.7, 0.9, 1.3, -0.05, 0.0, 0.1))),
    _d("blur-strong", False, ("blur", (1.3,))),
    _d("noise-high", False, ("noise", (0.14,))),
    _d("texture-checker", False, ("texture", (0.18, 3.0, 1.0))),
    _d("contrast-dark", False, ("contrast", (0.45, -0.18))),
    _d("jpeg-low", False, ("jpeg", (12,))),
)}
SOURCE_DOMAINS = tuple(n for n, d in DOMAINS.items() if d.source)
TARGET_DOMAINS = tuple(n for n, d in DOMAINS.items() if not d.source)


# Parameter ranges of the source shifts: from no shift up to the source domain's strength.
# Held-out target domains lie outside them (or use another pattern: checker, cool cast).
SOURCE_RANGES: dict[str, list[tuple[float, float]]] = {
    "colour": [(0.75, 1.25)] * 3 + [(-0.05, 0.05)] * 3,
    "blur": [(0.3, 0.8)],
    "noise": [(0.02, 0.07)],
    "texture": [(0.04, 0.12), (4.0, 6.0), (0.0, 0.0)],
    "contrast": [(0.6, 1.0), (-0.1, 0.1)],
    "jpeg": [(35, 90)],
}


def random_source_domain(base: str, rng: np.random.Generator) -> Domain:
    """A new domain within the source ranges: a source domain plus one random mild shift
    (what meta-training episodes adapt to; never a target-domain setting)."""
    kind = SHIFT_KINDS[int(rng.integers(len(SHIFT_KINDS)))]
    params = tuple(float(rng.uniform(lo, hi)) if hi > lo else float(lo) for lo, hi in SOURCE_RANGES[kind])
    if kind == "jpeg":
        params = (float(round(params[0])),)
    shift = Shift(kind, params)
    name = f"{base}+{kind}(" + ",".join(f"{p:.3g}" for p in params) + ")"
    return Domain(name, domain(base).shifts + (shift,), True)


def domain(name: str) -> Domain:
    """The named domain; an unknown name is one clear error listing the choices."""
    if name not in DOMAINS:
        raise EdgedetError(f"unknown synthetic domain {name!r}; choose from {', '.join(DOMAINS)}")
    return DOMAINS[name]


def apply_shift(img: np.ndarray, shift: Shift, rng: np.random.Generator) -> np.ndarray:
    """Shift one (H,W,3) float32 image in [0,1]; returns a new image in [0,1].

    colour (gr, gg, gb, or, og, ob): per-channel gain then offset.  blur (σ): Gaussian, pixels.
    noise (σ): additive Gaussian.  texture (amplitude, period, pattern 0 grating / 1 checker).
    contrast (c, b): mean + c·(x − mean) + b.  jpeg (quality): real JPEG round trip.
    """
    p = shift.params
    if shift.kind == "colour":
        out = img * np.asarray(p[:3], np.float32) + np.asarray(p[3:6], np.float32)
    elif shift.kind == "blur":
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(img, sigma=(p[0], p[0], 0.0), mode="reflect")
    elif shift.kind == "noise":
        out = img + rng.normal(0.0, p[0], img.shape).astype(np.float32)
    elif shift.kind == "texture":
        ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
        w = 2 * np.pi / p[1]
        pattern = np.sin(w * (xs + ys)) if p[2] == 0 else np.sign(np.sin(w * xs) * np.sin(w * ys))
        out = img + (p[0] * pattern)[..., None]
    elif shift.kind == "contrast":
        mean = img.mean(axis=(0, 1), keepdims=True)
        out = mean + p[0] * (img - mean) + p[1]
    elif shift.kind == "jpeg":
        out = _jpeg(img, int(p[0]))
    else:
        raise EdgedetError(f"unknown shift kind {shift.kind!r}; choose from {', '.join(SHIFT_KINDS)}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def render_in_domain(index: int, size: int, dom: Domain, seed: int = 0) -> tuple[np.ndarray, int]:
    """Image (size,size,3) float32 in [0,1] and label of sample `index` in domain `dom`."""
    img, label = render(index, size, seed, BASE_SPEC)
    rng = np.random.default_rng([seed, zlib.crc32(dom.name.encode()), index])
    for s in dom.shifts:
        img = apply_shift(img, s, rng)
    return img, label


class DomainShapes(Dataset):
    """Samples `start .. start+length-1` of the synthetic set in one domain, as normalised
    CHW tensors (the `SyntheticShapes` normalisation); generated once and kept as uint8."""

    def __init__(self, domain_name: str | Domain, length: int, size: int, start: int = 0, seed: int = 0):
        if length <= 0 or size <= 0 or start < 0:
            raise EdgedetError("domain set length and size must be positive and start non-negative")
        self.domain = domain_name if isinstance(domain_name, Domain) else domain(domain_name)
        self.length, self.size, self.start, self.seed = length, size, start, seed
        self.classes = list(CLASSES)
        imgs, labels = [], []
        for i in range(length):
            img, y = render_in_domain(start + i, size, self.domain, seed)
            imgs.append(np.round(img * 255).astype(np.uint8))
            labels.append(y)
        self._u8 = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return self.length

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N,3,H,W) normalised, and labels (N,)."""
        return (self._u8.float() / 255.0 - MEAN) / STD, self.labels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        return (self._u8[i].float() / 255.0 - MEAN) / STD, int(self.labels[i])
