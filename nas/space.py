"""The QuadraNet search space: a macro skeleton whose every layer picks a QuadraBlock
k∈{3,5,7} × e∈{2,4} or identity ("skip").

Downsampling lives between stages (LN + 2×2 stride-2 conv), so no block changes shape;
still, the first layer of each stage is kept a real block so every stage mixes spatially
(ProxylessNAS likewise never lets the first, shape-changing layer of a stage be identity).

A *skeleton* fixes widths and maximum depths; `SKELETONS` is the family the search picks
from so that a latency budget binds (see `nas.search.choose_skeleton`). The same skeleton
can host MBConv blocks (ProxylessNAS's own space, k∈{3,5,7} × e∈{3,6}) for comparison.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from torch import nn

from edgedet.arch import Arch, Layer, LayerChoice, Stage, Stem
from edgedet.errors import EdgedetError
from edgedet.models.quadranet import DEPTHS, QuadraBlock
from edgedet.nas.mbconv import MBConvBlock

BLOCKS = ("quadra", "mbconv")


@dataclass(frozen=True)
class SearchSpace:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    max_layers: tuple[int, ...] = (2, 3, 9, 2)
    input_size: int = 224
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (2, 4)
    num_classes: int = 1000
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    block: str = "quadra"

    @property
    def name(self) -> str:
        """Skeleton name: base width and total depth, e.g. c16-d16."""
        return f"c{self.widths[0]}-d{sum(self.max_layers)}"

    def block_choices(self) -> list[LayerChoice]:
        return [LayerChoice(k, e) for k in self.kernels for e in self.expansions]

    def layer_choices(self, stage: int, layer: int) -> list[Layer]:
        """Choices of one layer; identity (None) is last where it is allowed."""
        blocks: list[Layer] = list(self.block_choices())
        return blocks if layer == 0 else blocks + [None]

    def layers(self) -> list[tuple[int, int]]:
        """(stage, layer) of every searchable layer, in network order."""
        return [(s, i) for s, n in enumerate(self.max_layers) for i in range(n)]

    def all_choices(self) -> list[list[Layer]]:
        """Choices of every searchable layer, in network order."""
        return [self.layer_choices(s, i) for s, i in self.layers()]

    def stage_resolution(self, stage: int, input_size: int | None = None) -> int:
        """Feature-map side of a stage (stem stride 4, then ×½ per later stage)."""
        return (input_size or self.input_size) // (4 * 2**stage)

    def arch(self, layers: list[Layer], **meta) -> Arch:
        """Assemble an Arch from one choice per searchable layer (network order)."""
        if len(layers) != sum(self.max_layers):
            raise ValueError(f"need {sum(self.max_layers)} layer choices, got {len(layers)}")
        stages, pos = [], 0
        for s, (w, n) in enumerate(zip(self.widths, self.max_layers, strict=True)):
            stages.append(Stage(width=w, stride=1 if s == 0 else 2, layers=list(layers[pos:pos + n])))
            pos += n
        return Arch(stem=Stem(), stages=stages, input_size=self.input_size, num_classes=self.num_classes,
                    **meta)

    def arch_from_indices(self, indices: list[int], **meta) -> Arch:
        return self.arch([c[i] for c, i in zip(self.all_choices(), indices, strict=True)], **meta)

    def largest(self) -> Arch:
        big = LayerChoice(max(self.kernels), max(self.expansions))
        return self.arch([big] * sum(self.max_layers))

    def smallest(self) -> Arch:
        small = LayerChoice(min(self.kernels), min(self.expansions))
        return self.arch([small if i == 0 else None for _, i in self.layers()])

    def describe(self) -> dict:
        """The skeleton as recorded in arch.json / search.json."""
        return {"name": self.name, "block": self.block, "widths": list(self.widths),
                "max_layers": list(self.max_layers), "kernels": list(self.kernels),
                "expansions": list(self.expansions)}


def build_block(space_block: str, width: int, choice: Layer, memory_saving: bool = True) -> nn.Module:
    """The module of one layer choice (identity for "skip")."""
    if choice is None:
        return nn.Identity()
    if space_block == "quadra":
        return QuadraBlock(width, choice.kernel, choice.expansion, memory_saving=memory_saving)
    if space_block == "mbconv":
        return MBConvBlock(width, choice.kernel, choice.expansion)
    raise EdgedetError(f"unknown block type {space_block!r}; choose from {', '.join(BLOCKS)}")


# The skeleton family: base width C (stages C, 2C, 4C, 8C) × maximum depths (QuadraNet25/36
# depths and two more; engine runtimes on big GPUs are launch-bound, so depth sets latency there).
BASE_WIDTHS = (16, 24, 32, 48, 64, 96, 128)
SKELETONS = [f"c{c}-d{d}" for d in DEPTHS for c in BASE_WIDTHS]


def proxy_space(space: SearchSpace, base_width: int) -> SearchSpace:
    """The skeleton trained on the proxy: same depths and choices at base width base_width
    (0: unchanged). Widths only scale the supernet's cost; α and the LUT are per layer."""
    if base_width <= 0 or base_width == space.widths[0]:
        return space
    return replace(space, widths=tuple(base_width * w // space.widths[0] for w in space.widths))


def skeleton(name: str, block: str = "quadra", input_size: int = 224, num_classes: int = 1000) -> SearchSpace:
    """A skeleton of the family by name (c<C>-d<16|25|36|48>), hosting QuadraBlocks or MBConvs."""
    try:
        c_part, d_part = name.split("-")
        c, d = int(c_part.removeprefix("c")), int(d_part.removeprefix("d"))
        depths = DEPTHS[d]
    except (ValueError, KeyError):
        raise EdgedetError(f"unknown skeleton {name!r}; use c<C>-d<D> with D in {sorted(DEPTHS)}, "
                           f"e.g. {', '.join(SKELETONS[:3])}") from None
    if c < 8 or c % 8:
        raise EdgedetError(f"skeleton {name!r}: base width must be a multiple of 8, got {c}")
    if block not in BLOCKS:
        raise EdgedetError(f"unknown block type {block!r}; choose from {', '.join(BLOCKS)}")
    space = SearchSpace(widths=(c, 2 * c, 4 * c, 8 * c), max_layers=depths, input_size=input_size,
                        num_classes=num_classes, block=block)
    if block == "mbconv":
        space = replace(space, expansions=(3, 6))
    return space


def sample_arch(space: SearchSpace, rng: random.Random | int | None = None) -> Arch:
    """A uniformly random architecture of the space (each layer's choice uniform)."""
    r = rng if isinstance(rng, random.Random) else random.Random(rng)
    return space.arch([r.choice(space.layer_choices(s, i)) for s, i in space.layers()])
