"""Encoders from other libraries, each an optional extra: ``timm``, ``open_clip`` and ``torchvision`` models.

Weights come from the library's normal source (its download cache) or, with ``weights=PATH``, from a local file —
the only way on a machine without network. Each uses its library's own evaluation transform, so features match
what the model was trained on. The feature cache keys on the model name, the weights' digest and the transform.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from gpicl_bench.encoders.base import Encoder, state_digest
from gpicl_bench.errors import UserError


def optional_import(module: str, extra: str) -> ModuleType:
    """Import an optional library, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"this needs the optional {module} ({error}); install it with: pip install 'gpicl-bench[{extra}]'"
        ) from None


def _local_weights(weights: str) -> str:
    if weights and not Path(weights).is_file():
        raise UserError(f"weights file {weights} not found")
    return weights


class _LibraryEncoder(Encoder):
    """A library model in evaluation mode with its evaluation transform."""

    def __init__(self, library: str, model: str, module: nn.Module, transform: Callable[[Image.Image], Tensor]):
        if not model:
            raise UserError(f"encoder {library!r} needs a model name, e.g. {library}:model=NAME")
        self.library = library
        self.model = model
        self.module = module.eval()
        self.transform = transform
        self.digest = state_digest(self.module)

    def prepare(self, image: Image.Image) -> Tensor:
        return self.transform(image)

    def network(self) -> nn.Module:
        return self.module

    def identity(self) -> dict[str, Any]:
        return {
            "encoder": self.library,
            "model": self.model,
            "weights_sha256": self.digest,
            "transform": repr(self.transform),
        }


class Timm(_LibraryEncoder):
    """A ``timm`` model with its classifier removed (``num_classes=0``: pooled features)."""

    def __init__(self, *, model: str = "", weights: str = "") -> None:
        timm = optional_import("timm", "timm")
        overlay = {"file": _local_weights(weights)} if weights else None
        try:
            network = timm.create_model(model, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
        except (RuntimeError, ValueError, OSError) as error:
            raise UserError(f"timm cannot build {model!r}: {error}") from None
        config = timm.data.resolve_model_data_config(network)
        super().__init__("timm", model, network, timm.data.create_transform(**config, is_training=False))


class _ImageTower(nn.Module):
    """The image half of a CLIP model: images to embeddings."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images)


class OpenCLIP(_LibraryEncoder):
    """An ``open_clip`` image tower, e.g. ``open_clip:model=ViT-B-16,pretrained=openai`` (CAML's encoder);
    ``weights=PATH`` loads a local checkpoint instead of the named ``pretrained`` tag."""

    def __init__(self, *, model: str = "", pretrained: str = "openai", weights: str = "") -> None:
        open_clip = optional_import("open_clip", "open_clip")
        try:
            clip, _, transform = open_clip.create_model_and_transforms(
                model, pretrained=_local_weights(weights) or pretrained
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise UserError(f"open_clip cannot build {model!r}: {error}") from None
        super().__init__("open_clip", model, _ImageTower(clip), transform)


class TorchVision(_LibraryEncoder):
    """A ``torchvision`` classification model with its last classifier layer replaced by the identity."""

    def __init__(self, *, model: str = "", weights: str = "") -> None:
        models = optional_import("torchvision.models", "torchvision")
        try:
            default = models.get_model_weights(model).DEFAULT
            network = models.get_model(model, weights=None if weights else default)
        except (RuntimeError, ValueError, OSError) as error:
            raise UserError(f"torchvision cannot build {model!r}: {error}") from None
        if weights:
            network.load_state_dict(torch.load(_local_weights(weights), map_location="cpu", weights_only=True))
        for head in ("fc", "classifier", "heads", "head"):
            if hasattr(network, head):
                setattr(network, head, nn.Identity())
                break
        super().__init__("torchvision", model, network, default.transforms())
