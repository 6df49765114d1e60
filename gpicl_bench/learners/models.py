"""The sequence-model kinds: one table from a config's ``kind`` to its class, used to build and to load models.

A kind is the one string a config and a checkpoint carry about the architecture; everything that differs between
kinds (constraints on the config, whether CUDA runs it under bf16 autocast) is said by the class itself. The table
names each class by reference, so it is read without importing torch, and repeats the class's ``causal`` flag for the
checks of training options (tested against the class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpicl_bench.errors import UserError
from gpicl_bench.registry import load_attribute

if TYPE_CHECKING:
    import torch

    from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel


@dataclass(frozen=True)
class ModelKind:
    """Where a kind's class lives, its ``causal`` flag (which training options check before torch loads), and the
    checkpoint in the package that its learner loads by default, if it ships one."""

    reference: str  # "module:Class"
    causal: bool  # as the class's SequenceModel.causal: False for a model that learns from query slots only
    shipped: str | None = None  # a file name in gpicl_bench/checkpoints/

    def shipped_checkpoint(self) -> Path | None:
        return SHIPPED_DIR / self.shipped if self.shipped else None


SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
MODEL_KINDS: dict[str, ModelKind] = {
    "transformer": ModelKind(
        "gpicl_bench.learners.gpicl:GPICLTransformer", causal=True, shipped="gpicl-mixed-stage2.safetensors"
    ),
    "lstm": ModelKind("gpicl_bench.learners.lstm:LSTMLearner", causal=True),
    "caml": ModelKind("gpicl_bench.learners.caml:CAML", causal=False, shipped="caml-mixed.safetensors"),
    "snail": ModelKind("gpicl_bench.learners.snail:SNAIL", causal=True),
}


def model_kind(kind: str) -> ModelKind:
    """The declaration of a model kind; an unknown kind is a user error naming the known ones."""
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {kind!r}; kinds: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def model_class(kind: str) -> type[SequenceModel]:
    """The class of a model kind (imported on first use)."""
    return load_attribute(model_kind(kind).reference)


def build_model(config: SequenceConfig) -> SequenceModel:
    """A freshly initialised model of the config's kind (seeded by the caller's torch generator)."""
    return model_class(config.kind)(config)


def _from_settings(settings: dict[str, Any]) -> SequenceModel:
    from gpicl_bench.learners.sequence import SequenceConfig

    return build_model(SequenceConfig.from_dict(settings))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[SequenceModel, dict[str, Any]]:
    """The model of a sequence-learner checkpoint and its metadata (see :func:`gpicl_bench.checkpoints.load`)."""
    from gpicl_bench import checkpoints

    return checkpoints.load(path, _from_settings, device)
