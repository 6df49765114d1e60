"""Registry-facing sequence learners: a checkpoint (the shipped one by default), or one meta-trained on the spot.

``gpicl`` is the shipped checkpoint; ``gpicl:checkpoint=PATH`` any checkpoint; ``gpicl:fresh,steps=500,…`` a model
that declares those :class:`~gpicl_bench.learners.training_options.TrainingOptions` as its meta-training, which
:mod:`gpicl_bench.fitting` runs when the run reaches it (then it is evaluated like any other learner). ``caml``
works the same way with a shipped checkpoint of its own; ``lstm`` and ``snail`` ship none. Checkpoints load when the
learner is built, so a corrupt or mismatched one fails before any episode runs.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gpicl_bench.learners import input_rule_grammar, option_checks
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.models import load_model, model_class, model_kind
from gpicl_bench.learners.sequence import SequenceLearner, SequenceModel
from gpicl_bench.learners.training_options import TrainingOptions, knob_type

TRAINING_FIELDS = [f for f in dataclasses.fields(TrainingOptions) if f.name != "kind"]
# Test-time views (see SequenceLearner). The default, 0, reads a model whose input rule has the basis part once — its
# inputs are already the same for every rotation — and others in ROTATION_VIEWS views: 4 beat 1 by 0.6 points at
# 5-shot with the digits checkpoint (input rule standardise), at 4× the cost.
DEFAULT_VIEWS = 0
ROTATION_VIEWS = 4


def default_views(rule: str) -> int:
    return 1 if "basis" in input_rule_grammar.parse(rule) else ROTATION_VIEWS


class MetaTrained(Learner):
    """A sequence model from a checkpoint, or, when ``fresh``, one that declares its meta-training (its options) and
    predicts once :mod:`gpicl_bench.fitting` has fitted it."""

    relabelling_equivariant = SequenceLearner.relabelling_equivariant  # it predicts through one

    def __init__(
        self, kind: str, checkpoint: str, fresh: bool, inference: dict[str, Any], training: dict[str, Any]
    ) -> None:
        self.options = option_checks.meta_trained(
            kind, checkpoint=checkpoint, fresh=fresh, **inference, **{**TrainingOptions.defaults(), **training}
        )
        self.kind = kind
        self.inference = dict(inference)  # SequenceLearner's options: orders, views, precision, compile
        self.learner: SequenceLearner | None = None
        self.metadata: dict[str, Any] = {}
        self.checkpoint = ""
        if self.options is not None:
            self.inference["views"] = inference["views"] or default_views(self.options.input_rule)
            return
        shipped = model_kind(kind).shipped_checkpoint()
        path = checkpoint or shipped
        self.checkpoint = checkpoint or str(shipped.relative_to(shipped.parents[2]))  # in the package
        model, metadata = load_model(path)  # its kind was checked above
        self.metadata = metadata
        self.inference["views"] = inference["views"] or default_views(model.config.input_rule)
        self.learner = SequenceLearner(model, **self.inference)

    def details(self) -> dict[str, Any]:
        summary = {k: v for k, v in self.metadata.items() if k != "metrics"}
        summary["metrics"] = {k: v for k, v in self.metadata.get("metrics", {}).items() if k != "history"}
        summary["inference"] = self.inference
        return {"checkpoint": self.checkpoint, **summary} if self.checkpoint else summary

    def meta_training(self) -> TrainingOptions | None:
        return self.options if self.learner is None else None

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> None:
        if not isinstance(module, SequenceModel):
            raise TypeError(f"a {self.kind} learner is fitted with a sequence model, not {type(module).__name__}")
        self.metadata = details
        self.learner = SequenceLearner(module, **self.inference)

    def to(self, device: torch.device | str) -> MetaTrained:
        if self.learner is not None:
            self.learner.to(device)
        return self

    def _ready(self) -> SequenceLearner:
        if self.learner is None:
            raise RuntimeError(f"this fresh {self.kind} is not meta-trained yet: gpicl_bench.fitting.fit does it")
        return self.learner

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        return self._ready().bytes_per_episode(way, support, query, dim)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        return self._ready().predict(support_x, support_y, query_x, way)


class CausalMetaTrained(MetaTrained):
    """A causal model's learner, which also reads an episode as one sequence (the in-context learning curve)."""

    def sequence_predictions(self, x: Tensor, y: Tensor, way: int, support: int) -> Tensor:
        return self._ready().sequence_predictions(x, y, way, support)


def factory(kind: str) -> Callable[..., MetaTrained]:
    """A registry factory whose keyword-only options are ``checkpoint``, ``fresh`` and every training knob."""
    learner_class = CausalMetaTrained if model_class(kind).causal else MetaTrained

    def build(
        *,
        checkpoint: str = "",
        fresh: bool = False,
        orders: int = 1,
        views: int = DEFAULT_VIEWS,
        precision: str = "auto",
        compile: bool = False,
        **training: Any,
    ) -> MetaTrained:
        inference = {"orders": orders, "views": views, "precision": precision, "compile": compile}
        return learner_class(kind, checkpoint, fresh, inference, training)

    fixed = {
        "checkpoint": ("", str),
        "fresh": (False, bool),
        "orders": (1, int),
        "views": (DEFAULT_VIEWS, int),
        "precision": ("auto", str),
        "compile": (False, bool),
    }
    parameters = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind_of)
        for name, (default, kind_of) in fixed.items()
    ] + [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=knob_type(f))
        for f in TRAINING_FIELDS
    ]
    build.__signature__ = inspect.Signature(parameters, return_annotation=MetaTrained)  # type: ignore[attr-defined]
    build.__annotations__ = {
        **{name: kind_of for name, (_, kind_of) in fixed.items()},
        "return": MetaTrained,
        **{f.name: knob_type(f) for f in TRAINING_FIELDS},
    }
    build.__name__ = f"{kind}_learner"
    return build


# The learner registry's targets (gpicl_bench.learners.registry).
gpicl = factory("transformer")
lstm = factory("lstm")
caml = factory("caml")
snail = factory("snail")
