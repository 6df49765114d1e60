"""``pixels``: the image itself as the feature vector — resized, flattened and normalised. The baseline encoder,
and the one that needs no weights."""

from __future__ import annotations

from typing import Any

from PIL import Image
from torch import Tensor, nn

from gpicl_bench.encoders.base import Encoder, resize_square, to_normalised_tensor
from gpicl_bench.errors import UserError


class Pixels(Encoder):
    """Resize to ``size``×``size`` (bilinear), optionally to grey, normalise, flatten: D = size²·(1 or 3)."""

    def __init__(self, *, size: int = 28, grey: bool = False) -> None:
        if not 1 <= size <= 1024:
            raise UserError(f"pixels: size must be between 1 and 1024, got {size}")
        self.size = size
        self.grey = grey

    def prepare(self, image: Image.Image) -> Tensor:
        pixels = to_normalised_tensor(resize_square(image, self.size))
        return pixels.mean(0, keepdim=True) if self.grey else pixels

    def network(self) -> nn.Module:
        return nn.Flatten()

    def identity(self) -> dict[str, Any]:
        return {"encoder": "pixels", "size": self.size, "grey": self.grey, "normalise": "imagenet-mean-std"}
