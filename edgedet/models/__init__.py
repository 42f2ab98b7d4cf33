"""Model zoo: `edgedet.models.create(name, **overrides)` and `edgedet.models.names()`."""

from __future__ import annotations

import inspect

from torch import nn

from edgedet.arch import load_arch
from edgedet.errors import EdgedetError
from edgedet.models import baselines, quadranet, resnet_bn
from edgedet.models.asag import build_asag
from edgedet.models.plain_detr import build_plain_detr
from edgedet.models.registry import create, names, register, register_family
from edgedet.models.skeleton import Block, MacroNet

__all__ = ["Block", "MacroNet", "create", "names", "register", "register_family"]


def _quadranet_factory(depth: int, size: str):
    def build(num_classes: int = 1000, in_chans: int = 3, memory_saving: bool = True,
              kernel_size: int = 7, expansion: int = 4) -> nn.Module:
        arch = quadranet.quadranet_arch(depth, size, kernel=kernel_size, expansion=expansion,
                                        num_classes=num_classes)
        return quadranet.build_from_arch(arch, in_chans=in_chans, memory_saving=memory_saving)

    build.__doc__ = f"QuadraNet{depth}-{size}: widths {[quadranet.SIZES[size] * 2**i for i in range(4)]}, " \
                    f"depths {list(quadranet.DEPTHS[depth])}"
    return build


for _depth in quadranet.FAMILY_DEPTHS:
    for _size in quadranet.SIZES:
        register(f"quadranet{_depth}-{_size}")(_quadranet_factory(_depth, _size))


def _baseline_factory(kind: str):
    def build(num_classes: int = 1000, in_chans: int = 3, width: int = 64,
              depths: tuple[int, ...] = (2, 3, 18, 2)) -> nn.Module:
        return baselines.baseline_net(kind, width, tuple(depths), num_classes, in_chans)

    build.__doc__ = f"Baseline with {kind} blocks in the QuadraNet25-t skeleton (width 64, depths 2-3-18-2)"
    return build


for _name, _kind in (("convnet", "conv"), ("skipnet", "skip"), ("swinnet", "swin"), ("hornet", "hor")):
    register(_name)(_baseline_factory(_kind))


@register("resnet-bn")
def _resnet_bn(num_classes: int = 1000, in_chans: int = 3, width: int = 16, blocks: int = 1) -> nn.Module:
    """Small BatchNorm ResNet (stages 16-32-64, one basic block each): the BN net of `edgedet adapt`"""
    return resnet_bn.ResNetBN(num_classes, in_chans, width, blocks)


def _from_arch_file(path: str, num_classes: int | None = None, in_chans: int = 3,
                    memory_saving: bool = True) -> nn.Module:
    arch = load_arch(path)
    block = (arch.extra.get("skeleton") or {}).get("block", "quadra")
    if block != "quadra":
        raise EdgedetError(f"{path}: an arch of '{block}' blocks (a search-space comparison), not QuadraBlocks; "
                           "quadranet-arch: builds QuadraNet archs only")
    return quadranet.build_from_arch(arch, num_classes=num_classes, in_chans=in_chans,
                                     memory_saving=memory_saving)


register_family("quadranet-arch:", _from_arch_file)


def _plain_detr_factory(backbone: str, **overrides) -> nn.Module:
    return build_plain_detr(backbone, **overrides)


register_family("plain-detr-", _plain_detr_factory, examples=["plain-detr-quadranet25-xxs"])


def _asag_factory(backbone: str, **overrides) -> nn.Module:
    allowed = [p for p in inspect.signature(build_asag).parameters if p != "backbone_name"]
    bad = [k for k in overrides if k not in allowed]
    if bad:
        raise EdgedetError(f"model 'asag-{backbone}' has no option {', '.join(bad)} "
                           f"(options: {', '.join(allowed)})")
    return build_asag(backbone, **overrides)


register_family("asag-", _asag_factory, examples=["asag-quadranet25-xxs"])
