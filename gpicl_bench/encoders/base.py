"""What an encoder is: a frozen map from images to feature vectors, split into per-image preparation (run in
parallel worker threads on the CPU) and a batched forward pass (on the device)."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

# Channel statistics of ImageNet, which torchvision-style encoders are trained with and ``pixels`` also uses.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

T = TypeVar("T")


class Encoder(abc.ABC):
    """A frozen feature extractor. ``identity`` names everything its features depend on (the feature cache keys on
    it): the reference, the weights' digest and the image transform."""

    # Distributions whose versions the features depend on (image decoding, the network, the transform): the feature
    # cache records them and rebuilds an entry made with other versions.
    libraries: tuple[str, ...] = ("torch", "pillow")

    @abc.abstractmethod
    def prepare(self, image: Image.Image) -> Tensor:
        """One RGB image as the float tensor the network takes; runs in worker threads, so it must not touch the
        device."""

    @abc.abstractmethod
    def network(self) -> nn.Module:
        """The module mapping a batch of prepared images to features [B, D]."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What the features depend on: reference, weights digest, transform."""


def seeded(seed: int, build: Callable[[], T]) -> T:
    """Build under a fixed seed without touching the caller's random state: random weights that every process
    draws alike."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def error_line(error: BaseException) -> str:
    """A library's exception as one line (its type and first line): errors from other libraries can span pages."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """Resize to ``size``×``size`` with antialiasing (the few-shot convention: no aspect-preserving crop)."""
    return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)


def to_normalised_tensor(image: Image.Image) -> Tensor:
    """An RGB image as [3, H, W] float32 in [0, 1], normalised with the ImageNet channel statistics."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (array - mean) / std


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes and bytes): which weights made the features."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
