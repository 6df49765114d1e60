"""Encoders from other libraries, each an optional extra: ``timm``, ``open_clip`` and ``torchvision`` models.

Weights come from one of three places, named by options that are part of every label and cache key:
``pretrained=TAG`` (the library's own download; ``default`` or ``openai`` unless given), ``weights=FILE`` (a local
state dict, loaded strictly: a file for another architecture is refused) or ``pretrained=none,seed=N`` (random
weights, drawn under the seed, the same in every process — for exercising the pipeline without downloads). Each
encoder uses its library's evaluation transform, so features match what the model was trained on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch
from PIL import Image
from torch import Tensor, nn

from gpicl_bench.encoders.base import Encoder, error_line, seeded, state_digest
from gpicl_bench.encoders.weights import load_strictly
from gpicl_bench.errors import UserError

# A torch / torchvision pairing from PyPI known to import together (torchvision must be built for its torch).
WORKING_PAIR = "torch==2.14.1 torchvision==0.29.1"
RANDOM = "none"

T = TypeVar("T")


def optional_import(module: str, extra: str) -> ModuleType:
    """Import an optional library, or say in one line how to install one that imports. A torchvision built for
    another torch fails with RuntimeError or OSError, not ImportError."""
    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError, OSError) as error:
        if isinstance(error, ModuleNotFoundError) and error.name == module.split(".")[0]:
            raise UserError(
                f"this needs the optional {module} ({error}); install it with: pip install 'gpicl-bench[{extra}]'"
            ) from None
        raise UserError(
            f"the optional {module} is installed but does not import ({error_line(error)}); it needs a torchvision "
            f"built for this torch ({torch.__version__}), e.g. PyPI's regular pair: "
            f"pip install {WORKING_PAIR} 'gpicl-bench[{extra}]'"
        ) from None


class _LibraryEncoder(Encoder):
    """A library model in evaluation mode with its evaluation transform. Subclasses build the network from the
    source the options name (:meth:`_source`) and pass it here."""

    library: str
    default_pretrained: str = "default"
    offline: str = "set HF_HUB_OFFLINE=1 so that the hub fails at once instead of retrying"  # timm's and open_clip's

    def __init__(
        self, model: str, module: nn.Module, transform: Callable[[Image.Image], Tensor], source: dict[str, Any]
    ) -> None:
        self.model = model
        self.module = module.eval()
        self.transform = transform
        self.source = source
        self.digest = state_digest(self.module)

    @classmethod
    def _source(cls, model: str, pretrained: str, weights: str, seed: int) -> dict[str, Any]:
        """Where the weights come from, checked: a library tag, a local file, or seeded random weights."""
        if not model:
            raise UserError(f"encoder {cls.library!r} needs a model name, e.g. {cls.library}:model=NAME")
        if not pretrained:
            raise UserError(
                f"{cls.library}: pretrained is empty; name a tag, or pretrained=none,seed=N for random weights"
            )
        if weights and pretrained != cls.default_pretrained:
            raise UserError(f"{cls.library}: give weights=FILE or pretrained={pretrained}, not both")
        if seed and (weights or pretrained != RANDOM):
            raise UserError(f"{cls.library}: seed applies only to random weights (pretrained=none)")
        if weights:
            return {"weights_file": str(Path(weights).expanduser())}
        return {"random_seed": seed} if pretrained == RANDOM else {"pretrained": pretrained}

    @classmethod
    def _build(cls, model: str, source: dict[str, Any], build: Callable[[], T]) -> T:
        """Run a library's constructor; its errors (unknown model, failed download) become one line."""
        try:
            return seeded(source.get("random_seed", 0), build)
        except Exception as error:  # libraries raise their own types: unknown names, hub and network errors
            hint = ""
            if "pretrained" in source:
                hint = f"; without network pass weights=FILE or pretrained=none,seed=N, and {cls.offline}"
            raise UserError(f"{cls.library} cannot build {model!r} ({source}): {error_line(error)}{hint}") from None

    def prepare(self, image: Image.Image) -> Tensor:
        return self.transform(image)

    def network(self) -> nn.Module:
        return self.module

    def identity(self) -> dict[str, Any]:
        return {
            "encoder": self.library,
            "model": self.model,
            **self.source,
            "weights_sha256": self.digest,
            "transform": repr(self.transform),
        }


class Timm(_LibraryEncoder):
    """A ``timm`` model with its classifier removed (``num_classes=0``: pooled features). ``pretrained`` is
    ``default`` (the model's default tag), another of its tags, or ``none``."""

    library = "timm"
    libraries = (*Encoder.libraries, "torchvision", "timm")

    def __init__(self, *, model: str = "", pretrained: str = "default", weights: str = "", seed: int = 0) -> None:
        source = self._source(model, pretrained, weights, seed)
        timm = optional_import("timm", "timm")
        name = model if pretrained in ("default", RANDOM) else f"{model}.{pretrained}"
        download = "pretrained" in source
        network = self._build(model, source, lambda: timm.create_model(name, pretrained=download, num_classes=0))
        if weights:
            head = network.pretrained_cfg.get("classifier") or ()
            removed = tuple(f"{part}." for part in ((head,) if isinstance(head, str) else head))
            load_strictly(network, Path(source["weights_file"]), f"timm:{model}", removed)
        config = timm.data.resolve_model_data_config(network)
        super().__init__(model, network, timm.data.create_transform(**config, is_training=False), source)


class OpenCLIP(_LibraryEncoder):
    """An ``open_clip`` image tower, e.g. ``open_clip:model=ViT-B-16,pretrained=openai`` (CAML's encoder). A
    ``weights`` file holds the whole CLIP model's state dict; features are the tower's unnormalised embeddings."""

    library, default_pretrained = "open_clip", "openai"
    libraries = (*Encoder.libraries, "torchvision", "open_clip_torch")

    def __init__(self, *, model: str = "", pretrained: str = "openai", weights: str = "", seed: int = 0) -> None:
        source = self._source(model, pretrained, weights, seed)
        open_clip = optional_import("open_clip", "open_clip")
        tag = source.get("pretrained")
        clip, _, transform = self._build(model, source, lambda: open_clip.create_model_and_transforms(model, tag))
        if weights:
            load_strictly(clip, Path(source["weights_file"]), f"open_clip:{model}")
        super().__init__(model, clip.visual, transform, source)


class TorchVision(_LibraryEncoder):
    """A ``torchvision`` classification model with its last classifier layer replaced by the identity.
    ``pretrained`` is ``default`` or a name of the model's weights enum (``IMAGENET1K_V2``), or ``none``."""

    library = "torchvision"
    libraries = (*Encoder.libraries, "torchvision")
    offline = "put the file the error names in $TORCH_HOME/hub/checkpoints"
    _HEADS = ("fc", "classifier", "heads", "head")

    def __init__(self, *, model: str = "", pretrained: str = "default", weights: str = "", seed: int = 0) -> None:
        source = self._source(model, pretrained, weights, seed)
        models = optional_import("torchvision.models", "torchvision")
        try:
            enum = models.get_model_weights(model)
        except ValueError:
            raise UserError(f"torchvision has no model {model!r}") from None
        named = pretrained if "pretrained" in source else "default"
        choices = {"default": enum.DEFAULT, **{member.name: member for member in enum}}
        if named not in choices:
            raise UserError(f"torchvision {model!r} has no weights {named!r}; choose from {', '.join(choices)}")
        chosen = choices[named] if "pretrained" in source else None
        network = self._build(model, source, lambda: models.get_model(model, weights=chosen))
        head = next((name for name in self._HEADS if hasattr(network, name)), None)
        if head is not None:
            setattr(network, head, nn.Identity())
        if weights:
            removed = (f"{head}.",) if head is not None else ()
            load_strictly(network, Path(source["weights_file"]), f"torchvision:{model}", removed)
        super().__init__(model, network, choices[named].transforms(), source)
