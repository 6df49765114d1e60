"""The encoder registry: frozen feature extractors that turn an image suite into feature vectors.

``pixels`` and ``conv4`` are built in; ``timm``, ``open_clip`` and ``torchvision`` are optional extras. A library
encoder's model may be given as its only option: ``timm:resnet50`` means ``timm:model=resnet50``.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from gpicl_bench.registry import Ref, Registry, portable_name

if TYPE_CHECKING:
    from gpicl_bench.encoders.base import Encoder

# Entries declare their options, so that checking references imports no encoder (nor torch); tests/test_registry.py
# checks the declarations against the classes.
ENCODERS: Registry[Encoder] = Registry("encoder", "gpicl_bench.encoders", base="gpicl_bench.encoders.base:Encoder")
_LIBRARY_OPTIONS = {"model": "", "pretrained": "default", "weights": "", "seed": 0}
ENCODERS.add(
    "pixels",
    "gpicl_bench.encoders.pixels:Pixels",
    "the resized image itself, flattened and normalised (no weights)",
    options={"size": 28, "grey": False},
)
ENCODERS.add(
    "conv4",
    "gpicl_bench.encoders.conv4:Conv4",
    "the standard 4-block few-shot CNN, seeded random or weights=FILE.safetensors",
    options={"size": 84, "weights": "", "seed": 0},
)
ENCODERS.add(
    "timm",
    "gpicl_bench.encoders.external:Timm",
    "a timm model's pooled features; pretrained=TAG|none,seed=N or weights=FILE (extra)",
    options=_LIBRARY_OPTIONS,
)
ENCODERS.add(
    "open_clip",
    "gpicl_bench.encoders.external:OpenCLIP",
    "an OpenCLIP image tower, e.g. model=ViT-B-16,pretrained=openai (extra)",
    options={**_LIBRARY_OPTIONS, "pretrained": "openai"},
)
ENCODERS.add(
    "torchvision",
    "gpicl_bench.encoders.external:TorchVision",
    "a torchvision model without its classifier; pretrained=…|none or weights=FILE",
    options=_LIBRARY_OPTIONS,
)

_LIBRARY_ENCODERS = ("timm", "open_clip", "torchvision")

__all__ = ["ENCODERS", "encoder_label", "encoder_ref", "library_versions"]


def encoder_ref(text: str) -> Ref:
    """The canonical reference of an encoder, with ``LIB:MODEL,…`` read as ``LIB:model=MODEL,…``."""
    name, _, rest = text.strip().partition(":")
    first, comma, others = rest.partition(",")
    if name in _LIBRARY_ENCODERS and first and "=" not in first:
        text = f"{name}:model={first}{comma}{others}"
    return ENCODERS.canonical(Ref.parse(text))


def encoder_label(ref: Ref) -> str:
    """The encoder as results name it: a local weights file by its name and content digest, never by its path."""
    name = portable_name(ref.name)
    weights = ref.options.get("weights")
    if not weights:
        return str(Ref(name, ref.options))
    from gpicl_bench.encoders.weights import weights_digest  # torch: only where a weights file is named

    return str(Ref(name, {**ref.options, "weights": f"{Path(weights).name}@{weights_digest(weights)[:12]}"}))


def library_versions(ref: Ref) -> dict[str, str]:
    """The installed versions of the distributions an encoder's features depend on (read without importing them)."""
    versions = {}
    for distribution in ENCODERS.entry(ref.name).factory.libraries:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "absent"
    return versions
