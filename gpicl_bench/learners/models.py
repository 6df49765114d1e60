"""The sequence-model kinds: one table from a config's ``kind`` to its class, used to build and to load models.

A kind is the one string a config and a checkpoint carry about the architecture; everything that differs between
kinds (constraints on the config, whether CUDA runs it under bf16 autocast) is said by the class itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gpicl_bench import checkpoints
from gpicl_bench.errors import UserError
from gpicl_bench.learners.caml import CAML
from gpicl_bench.learners.gpicl import GPICLTransformer
from gpicl_bench.learners.lstm import LSTMLearner
from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel
from gpicl_bench.learners.snail import SNAIL

MODEL_KINDS: dict[str, type[SequenceModel]] = {
    "transformer": GPICLTransformer,
    "lstm": LSTMLearner,
    "caml": CAML,
    "snail": SNAIL,
}


def model_class(kind: str) -> type[SequenceModel]:
    """The class of a model kind; an unknown kind is a user error naming the known ones."""
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {kind!r}; kinds: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def build_model(config: SequenceConfig) -> SequenceModel:
    """A freshly initialised model of the config's kind (seeded by the caller's torch generator)."""
    return model_class(config.kind)(config)


def _from_settings(settings: dict[str, Any]) -> SequenceModel:
    return build_model(SequenceConfig.from_dict(settings))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[SequenceModel, dict[str, Any]]:
    """The model of a sequence-learner checkpoint and its metadata (see :func:`gpicl_bench.checkpoints.load`)."""
    return checkpoints.load(path, _from_settings, device)
