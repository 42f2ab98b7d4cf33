"""Random networks of the search space, for the latency profiles' calibration sets
(`edgedet.profiles.calibration_nets.SpaceNet`): profiles are fitted on what the search explores."""

from __future__ import annotations

import random

from torch import nn

from edgedet.nas.driver import build_space_net
from edgedet.nas.space import sample_arch, skeleton


def random_space_net(block: str, r: random.Random) -> tuple[str, nn.Module, int]:
    """(name, network with 1000 classes, input size) of a random arch of a random skeleton
    (widths 8–32, depth 16 or 25) of `block` ("quadra" or "mbconv") at 160–224 px."""
    sk = f"c{r.choice([8, 16, 24, 32])}-d{r.choice([16, 16, 25])}"
    size = r.choice([160, 192, 224, 224])
    space = skeleton(sk, block=block, input_size=size)
    return f"{block}-{sk}-{size}", build_space_net(space, sample_arch(space, r), 1000), size
