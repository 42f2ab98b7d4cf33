"""MLP: linear layers with an activation between them (the detectors' box and score heads)."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Linears dims[0]→dims[1]→…→dims[-1], `act` between them, none after the last
    (state-dict keys layers.{i}). (..., dims[0]) → (..., dims[-1])."""

    def __init__(self, dims: list[int], act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
