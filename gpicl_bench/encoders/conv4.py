"""``conv4``: the standard four-block few-shot CNN (Vinyals et al. 2016; Snell et al. 2017) as a frozen encoder.

Each block is conv 3×3 (64 channels) → batch norm → ReLU → max-pool 2; at 84×84 input the output is 64×5×5 = 1,600
features. Weights are a seeded random initialisation (a sanity baseline: random conv features are far from useless)
or a safetensors file of this module's state dict (``weights=PATH``), checked name by name and shape by shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor, nn

from gpicl_bench.encoders.base import Encoder, resize_square, seeded, state_digest, to_normalised_tensor
from gpicl_bench.encoders.weights import load_strictly
from gpicl_bench.errors import UserError


def conv4_network(channels: int = 64) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for index in range(4):
        blocks += [
            nn.Conv2d(3 if index == 0 else channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
    return nn.Sequential(*blocks, nn.Flatten())


class Conv4(Encoder):
    """The four-block CNN at ``size``×``size`` input; ``weights`` is a safetensors state dict, else seeded random."""

    def __init__(self, *, size: int = 84, weights: str = "", seed: int = 0) -> None:
        if size < 16:
            raise UserError(f"conv4: size must be at least 16 (four 2× poolings), got {size}")
        self.size = size
        self.module = seeded(seed, conv4_network).eval()
        self.weights = weights
        self.seed = seed
        if weights:
            load_strictly(self.module, Path(weights).expanduser(), "conv4")
        self.digest = state_digest(self.module)

    def prepare(self, image: Image.Image) -> Tensor:
        return to_normalised_tensor(resize_square(image, self.size))

    def network(self) -> nn.Module:
        return self.module

    def identity(self) -> dict[str, Any]:
        return {"encoder": "conv4", "size": self.size, "weights_sha256": self.digest}
