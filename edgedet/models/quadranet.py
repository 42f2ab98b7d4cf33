"""QuadraBlock and the QuadraNet family.

QuadraBlock: x = x + γ1·QuadraConv_k(LN(x)); x = x + γ2·PW2(GELU(PW1(LN(x)))).
QuadraNet25/36: widths [C,2C,4C,8C], C ∈ {16,32,64,96,128} for xxs/xs/t/s/b, depths
[2,3,18,2] / [3,3,27,3]. Any `Arch` (arch.json) builds the same way, with "skip" layers
as identities.
"""

from __future__ import annotations

from torch import nn

from edgedet.arch import Arch, uniform_arch
from edgedet.kernels import QuadraConv2d
from edgedet.models.skeleton import Block, MacroNet

SIZES = {"xxs": 16, "xs": 32, "t": 64, "s": 96, "b": 128}
# Stage depths by total depth: QuadraNet25/36 (the paper's families) and the NAS skeletons' 16 and 48.
DEPTHS = {16: (2, 3, 9, 2), 25: (2, 3, 18, 2), 36: (3, 3, 27, 3), 48: (3, 6, 36, 3)}
FAMILY_DEPTHS = (25, 36)  # registered as quadranet<depth>-<size>


class QuadraBlock(Block):
    def __init__(self, dim: int, kernel_size: int = 7, expansion: int = 4, memory_saving: bool = True):
        super().__init__(dim, QuadraConv2d(dim, kernel_size, memory_saving=memory_saving), expansion)
        self.kernel_size, self.expansion = kernel_size, expansion


def quadranet_arch(depth: int, size: str, **kw) -> Arch:
    c = SIZES[size]
    return uniform_arch([c, 2 * c, 4 * c, 8 * c], list(DEPTHS[depth]), **kw)


def build_from_arch(arch: Arch, num_classes: int | None = None, in_chans: int = 3,
                    memory_saving: bool = True) -> MacroNet:
    """The network an arch.json describes ("skip" layers become identities)."""
    stages = [
        [nn.Identity() if l is None else QuadraBlock(s.width, l.kernel, l.expansion, memory_saving)
         for l in s.layers]
        for s in arch.stages
    ]
    net = MacroNet(
        [s.width for s in arch.stages],
        stages,
        strides=[s.stride for s in arch.stages],
        in_chans=in_chans,
        num_classes=num_classes if num_classes is not None else arch.num_classes,
        stem_kernel=arch.stem.kernel,
        stem_stride=arch.stem.stride,
    )
    net.arch = arch
    return net
