"""Export-time form of an edgedet model: custom ops swapped in, fixed input/output names.

The swaps keep parameters and values: `QuadraConv2d` → `QuadraConvExport` (one
`edgedet.QuadraConv` node), `BoxRPBCrossAttention` → its export form (one
`edgedet.BoxRPBAttention` node), and detectors are wrapped so they return the fixed-size
`labels, boxes, scores` triple.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from edgedet.exporters import detector_swaps
from edgedet.exporters.detector_swaps import DetectorOutputs
from edgedet.exporters.quadraconv_onnx import QuadraConvExport
from edgedet.kernels.quadratic import QuadraConv2d


@dataclass
class ExportForm:
    """A module ready for `export_onnx` and the names/shapes of its inputs and outputs."""

    module: nn.Module
    kind: str  # "classifier" | "detector"
    input_names: list[str]
    output_names: list[str]
    input_shape: tuple[int, ...]  # batch 1
    reference: nn.Module  # the same wrapper around the eager model (no swaps): parity's reference

    def example(self, batch: int = 1, seed: int = 0) -> tuple[Tensor, ...]:
        """Seeded input images, N(0,1) like normalised pixels."""
        g = torch.Generator().manual_seed(seed)
        return (torch.randn((batch, *self.input_shape[1:]), generator=g),)


def swap_modules(model: nn.Module) -> list[str]:
    """Replace edgedet layers by their export forms in place; returns the custom ops used."""
    used: set[str] = set()
    for name, child in list(model.named_children()):
        if isinstance(child, QuadraConv2d):
            setattr(model, name, QuadraConvExport(child))
            used.add("edgedet.QuadraConv")
            continue
        swapped = _swap_detector_layer(child)
        if swapped is not None:
            setattr(model, name, swapped[0])
            used.update(swapped[1])
            continue
        used.update(swap_modules(child))
    return sorted(used)


def _swap_detector_layer(child: nn.Module) -> tuple[nn.Module, list[str]] | None:
    return detector_swaps.swap(child)


class ClassifierOutputs(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def prepare(model: nn.Module, input_size: int, in_chans: int = 3) -> ExportForm:
    """Deep-copy `model`, put it in eval mode with custom ops swapped in, and name its I/O."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    m = copy.deepcopy(ref)
    swap_modules(m)
    shape = (1, in_chans, input_size, input_size)
    if is_detector(m):
        return ExportForm(
            DetectorOutputs(m),
            "detector",
            ["image"],
            ["labels", "boxes", "scores"],
            shape,
            DetectorOutputs(ref),
        )
    return ExportForm(
        ClassifierOutputs(m), "classifier", ["image"], ["logits"], shape, ClassifierOutputs(ref)
    )


def is_detector(model: nn.Module) -> bool:
    return detector_swaps.is_detector(model)


def custom_ops_in(module: nn.Module) -> list[str]:
    """'edgedet.<Op>' of every export-form layer inside `module`."""
    ops = set()
    for m in module.modules():
        op = getattr(m, "onnx_op", None)
        if isinstance(op, str):
            ops.add(op)
    return sorted(ops)
