"""The QuadraNet search space: a macro skeleton whose every layer picks a QuadraBlock
k∈{3,5,7} × e∈{2,4} or identity ("skip").

Downsampling lives between stages (LN + 2×2 stride-2 conv), so no block changes shape;
still, the first layer of each stage is kept a real block so every stage mixes spatially
(ProxylessNAS likewise never lets the first, shape-changing layer of a stage be identity).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from edgedet.arch import Arch, Layer, LayerChoice, Stage, Stem


@dataclass(frozen=True)
class SearchSpace:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    max_layers: tuple[int, ...] = (2, 3, 9, 2)
    input_size: int = 224
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (2, 4)
    num_classes: int = 1000
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def block_choices(self) -> list[LayerChoice]:
        return [LayerChoice(k, e) for k in self.kernels for e in self.expansions]

    def layer_choices(self, stage: int, layer: int) -> list[Layer]:
        """Choices of one layer; identity (None) is last where it is allowed."""
        blocks: list[Layer] = list(self.block_choices())
        return blocks if layer == 0 else blocks + [None]

    def layers(self) -> list[tuple[int, int]]:
        """(stage, layer) of every searchable layer, in network order."""
        return [(s, i) for s, n in enumerate(self.max_layers) for i in range(n)]

    def arch(self, layers: list[Layer], **meta) -> Arch:
        """Assemble an Arch from one choice per searchable layer (network order)."""
        if len(layers) != sum(self.max_layers):
            raise ValueError(f"need {sum(self.max_layers)} layer choices, got {len(layers)}")
        stages, pos = [], 0
        for s, (w, n) in enumerate(zip(self.widths, self.max_layers, strict=True)):
            stages.append(Stage(width=w, stride=1 if s == 0 else 2, layers=list(layers[pos:pos + n])))
            pos += n
        return Arch(stem=Stem(), stages=stages, input_size=self.input_size, num_classes=self.num_classes, **meta)

    def largest(self) -> Arch:
        big = LayerChoice(max(self.kernels), max(self.expansions))
        return self.arch([big] * sum(self.max_layers))

    def smallest(self) -> Arch:
        small = LayerChoice(min(self.kernels), min(self.expansions))
        return self.arch([small if i == 0 else None for _, i in self.layers()])


def sample_arch(space: SearchSpace, rng: random.Random | int | None = None) -> Arch:
    """A uniformly random architecture of the space (each layer's choice uniform)."""
    r = rng if isinstance(rng, random.Random) else random.Random(rng)
    return space.arch([r.choice(space.layer_choices(s, i)) for s, i in space.layers()])
