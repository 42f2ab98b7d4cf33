"""Feature Pyramid Network over a backbone's stride-8/16/32 stages, plus P6 (stride 64).

P_l = 3×3 conv(lateral_l(C_l) + upsample2×(top-down_{l+1})), lateral = 1×1 conv; P6 is a
stride-2 max-pool of P5 (the torchvision / Detectron "LastLevelMaxPool" choice).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """Inputs: the backbone's stage maps at strides 8, 16, 32; outputs P3, P4, P5, P6 (dim ch)."""

    strides = (8, 16, 32, 64)

    def __init__(self, in_channels: list[int], dim: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        x = self.lateral[-1](feats[-1])
        outs = [self.output[-1](x)]
        for i in range(len(feats) - 2, -1, -1):
            x = self.lateral[i](feats[i]) + F.interpolate(x, size=feats[i].shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](x))
        outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs
