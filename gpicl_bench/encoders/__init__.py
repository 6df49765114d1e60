"""The encoder registry: frozen feature extractors that turn an image suite into feature vectors.

``pixels`` and ``conv4`` are built in; ``timm``, ``open_clip`` and ``torchvision`` are optional extras. A library
encoder's model may be given as its only option: ``timm:resnet50`` means ``timm:model=resnet50``.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from gpicl_bench.encoders.base import Encoder
from gpicl_bench.encoders.conv4 import Conv4
from gpicl_bench.encoders.external import OpenCLIP, Timm, TorchVision
from gpicl_bench.encoders.pixels import Pixels
from gpicl_bench.encoders.weights import weights_digest
from gpicl_bench.registry import Ref, Registry

ENCODERS: Registry[Encoder] = Registry("encoder")
ENCODERS.register("pixels", "the resized image itself, flattened and normalised (no weights)")(Pixels)
ENCODERS.register("conv4", "the standard 4-block few-shot CNN, seeded random or weights=FILE.safetensors")(Conv4)
ENCODERS.register("timm", "a timm model's pooled features; pretrained=TAG|none,seed=N or weights=FILE (extra)")(Timm)
ENCODERS.register("open_clip", "an OpenCLIP image tower, e.g. model=ViT-B-16,pretrained=openai (extra)")(OpenCLIP)
ENCODERS.register("torchvision", "a torchvision model without its classifier; pretrained=…|none or weights=FILE")(
    TorchVision
)

_LIBRARY_ENCODERS = ("timm", "open_clip", "torchvision")

__all__ = ["ENCODERS", "Encoder", "encoder_label", "encoder_ref", "library_versions"]


def encoder_ref(text: str) -> Ref:
    """The canonical reference of an encoder, with ``LIB:MODEL,…`` read as ``LIB:model=MODEL,…``."""
    name, _, rest = text.strip().partition(":")
    first, comma, others = rest.partition(",")
    if name in _LIBRARY_ENCODERS and first and "=" not in first:
        text = f"{name}:model={first}{comma}{others}"
    return ENCODERS.canonical(Ref.parse(text))


def encoder_label(ref: Ref) -> str:
    """The encoder as results name it: a local weights file by its name and content digest, never by its path."""
    weights = ref.options.get("weights")
    if not weights:
        return str(ref)
    named = f"{Path(weights).name}@{weights_digest(weights)[:12]}"
    return str(Ref(ref.name, {**ref.options, "weights": named}))


def library_versions(ref: Ref) -> dict[str, str]:
    """The installed versions of the distributions an encoder's features depend on (read without importing them)."""
    versions = {}
    for distribution in ENCODERS.entry(ref.name).factory.libraries:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "absent"
    return versions
