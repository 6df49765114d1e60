"""Registry-facing sequence learners: a checkpoint (the shipped one by default), or one meta-trained on the spot.

``gpicl`` is the shipped checkpoint; ``gpicl:checkpoint=PATH`` any checkpoint; ``gpicl:fresh,steps=500,…`` a model
meta-trained with those :class:`~gpicl_bench.training.TrainingOptions` when the run reaches it (then evaluated like
any other learner). ``lstm`` works the same way but ships no checkpoint. Checkpoints load when the learner is built,
so a corrupt or mismatched one fails before any episode runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gpicl_bench import checkpoints
from gpicl_bench.errors import UserError
from gpicl_bench.learners import input_rule
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.sequence import SequenceLearner, check_inference
from gpicl_bench.training import TrainingLog, train
from gpicl_bench.training_options import TrainingOptions, knob_type

log = logging.getLogger(__name__)
TRAINING_FIELDS = [f for f in dataclasses.fields(TrainingOptions) if f.name != "kind"]
# Test-time views (see SequenceLearner). The default, 0, reads a model whose input rule has the basis part once — its
# inputs are already the same for every rotation — and others in ROTATION_VIEWS views: 4 beat 1 by 0.6 points at
# 5-shot with the digits checkpoint (input rule standardise), at 4× the cost.
DEFAULT_VIEWS = 0
ROTATION_VIEWS = 4


def default_views(rule: str) -> int:
    return 1 if "basis" in input_rule.parse(rule) else ROTATION_VIEWS


class MetaTrained(Learner):
    """A sequence model from a checkpoint, or trained from scratch at :meth:`to` when ``fresh``."""

    def __init__(
        self, kind: str, checkpoint: str, fresh: bool, inference: dict[str, Any], training: dict[str, Any]
    ) -> None:
        check_inference(**{**inference, "views": inference["views"] or 1})  # views 0 (automatic) is resolved below
        self.kind = kind
        self.inference = dict(inference)  # SequenceLearner's options: orders, views, precision, compile
        self.learner: SequenceLearner | None = None
        self.metadata: dict[str, Any] = {}
        self.checkpoint = ""
        if fresh:
            if checkpoint:
                raise UserError("give either checkpoint=… or fresh, not both")
            self.options = TrainingOptions.from_values({"kind": kind, **training}, f"{kind} learner")
            self.inference["views"] = inference["views"] or default_views(self.options.input_rule)
            return
        if training:
            raise UserError(f"training options ({', '.join(sorted(training))}) need the flag fresh")
        if not checkpoint and kind == "lstm":
            raise UserError("lstm ships no checkpoint: use lstm:checkpoint=PATH or lstm:fresh,…")
        self.checkpoint = str(checkpoint or checkpoints.SHIPPED.relative_to(checkpoints.SHIPPED.parents[2]))
        model, metadata = checkpoints.load(checkpoint or checkpoints.SHIPPED)
        if model.config.kind != kind:
            raise UserError(f"checkpoint {checkpoint} holds a {model.config.kind} model, not a {kind}")
        self.metadata = metadata
        self.inference["views"] = inference["views"] or default_views(model.config.input_rule)
        self.learner = SequenceLearner(model, **self.inference)

    def details(self) -> dict[str, Any]:
        summary = {k: v for k, v in self.metadata.items() if k != "metrics"}
        summary["metrics"] = {k: v for k, v in self.metadata.get("metrics", {}).items() if k != "history"}
        summary["inference"] = self.inference
        return {"checkpoint": self.checkpoint, **summary} if self.checkpoint else summary

    def to(self, device: torch.device | str) -> MetaTrained:
        if self.learner is None:
            log.info("meta-training a fresh %s for %d steps", self.kind, self.options.steps)
            result = train(self.options, torch.device(device), _log_progress)
            self.metadata = result.metadata
            metrics = result.metadata["metrics"]
            log.info(
                "meta-trained: seen-task accuracy %.1f%%, held-out (unseen tasks) %.1f%%",
                100 * metrics["seen_task_accuracy"],
                100 * metrics["held_out_accuracy"],
            )
            self.learner = SequenceLearner(result.model, **self.inference)
        self.learner.to(device)
        return self

    def _ready(self) -> SequenceLearner:
        if self.learner is None:
            raise RuntimeError("call .to(device) first: it meta-trains a fresh model")
        return self.learner

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        return self._ready().bytes_per_episode(way, support, query, dim)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        return self._ready().predict(support_x, support_y, query_x, way)

    def sequence_predictions(self, x: Tensor, y: Tensor, way: int, support: int) -> Tensor:
        return self._ready().sequence_predictions(x, y, way, support)


def _log_progress(entry: TrainingLog) -> None:
    if entry.held_out_accuracy is not None:
        log.info(
            "step %d/%d: loss %.3f, held-out accuracy %.1f%%",
            entry.step,
            entry.steps,
            entry.loss,
            100 * entry.held_out_accuracy,
        )


def factory(kind: str) -> Callable[..., MetaTrained]:
    """A registry factory whose keyword-only options are ``checkpoint``, ``fresh`` and every training knob."""

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
        return MetaTrained(kind, checkpoint, fresh, inference, training)

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
