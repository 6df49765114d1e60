"""``conv4``: the standard four-block few-shot CNN (Vinyals et al. 2016; Snell et al. 2017) as a frozen encoder.

Each block is conv 3×3 (64 channels) → batch norm → ReLU → max-pool 2; at 84×84 input the output is 64×5×5 = 1,600
features. Weights are a seeded random initialisation (a sanity baseline: random conv features are far from useless)
or a safetensors file of this module's state dict (``weights=PATH``), checked name by name and shape by shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from gpicl_bench.encoders.base import Encoder, resize_square, state_digest, to_normalised_tensor
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
        torch.manual_seed(seed)
        self.module = conv4_network().eval()
        self.weights = weights
        self.seed = seed
        if weights:
            self.module.load_state_dict(_read_state(Path(weights), self.module))
        self.digest = state_digest(self.module)

    def prepare(self, image: Image.Image) -> Tensor:
        return to_normalised_tensor(resize_square(image, self.size))

    def network(self) -> nn.Module:
        return self.module

    def identity(self) -> dict[str, Any]:
        return {"encoder": "conv4", "size": self.size, "weights_sha256": self.digest}


def _read_state(path: Path, module: nn.Module) -> dict[str, Tensor]:
    """A safetensors state dict that matches ``module`` exactly; anything else is a user error."""
    if not path.is_file():
        raise UserError(f"conv4 weights {path} not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"conv4 weights {path} are corrupt or unreadable: {error}") from None
    expected = module.state_dict()
    mismatched = sorted(set(expected) ^ set(tensors)) + [
        name for name in expected if name in tensors and tensors[name].shape != expected[name].shape
    ]
    if mismatched:
        raise UserError(f"conv4 weights {path} do not match the conv4 network (e.g. {', '.join(mismatched[:3])})")
    return tensors
