"""The recipe of a meta-trained sequence learner: every knob of meta-training, validated where it is given.

A fresh learner (``gpicl:fresh,…``) declares these options as what it needs meta-trained, and ``gpicl-bench train``
reads them from a spec and flags; :mod:`gpicl_bench.training` runs them. They are plain settings — the data sources
are suite references, opened by the training layer — so a learner can hold them without depending on that layer.

Importing this module imports no torch: the command line declares the ``train`` options and the fresh learners'
options from these fields when it starts. Checking a set of knobs (constructing :class:`TrainingOptions`) loads the
modules whose rules they follow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpicl_bench.errors import UserError

if TYPE_CHECKING:
    from gpicl_bench.learners.sequence import SequenceConfig
    from gpicl_bench.task_distribution import TaskDistribution

_KNOB_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
KNOB_NOUNS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def knob_type(field: dataclasses.Field[Any]) -> type:
    """The type of a training knob (annotations are strings here, under postponed evaluation)."""
    return _KNOB_TYPES[str(field.type)]


def knob(default: Any, help: str) -> Any:
    """A training option with the help text that ``gpicl-bench train --help`` shows."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingOptions:
    """Every knob of meta-training. The defaults leave the loss plateau reliably; the shipped checkpoint's recipe
    (benchmarks/gpicl-mixed-train.toml, then benchmarks/gpicl-mixed-stage2-train.toml from its weights) is these with
    a wider model, more steps and float16 storage."""

    source: str = knob(
        "digits",
        "suite reference(s) whose 'train' splits provide the inputs, joined by '+' (e.g. digits, cub+aircraft)",
    )
    encoder: str = knob("pixels", "encoder of image sources (their features come from the feature cache)")
    data_root: str = knob("", "folder of the image sources' data (default: $GPICL_BENCH_DATA)")
    cache_dir: str = knob("", "feature cache folder (default: $GPICL_BENCH_CACHE or ~/.cache/gpicl-bench)")
    kind: str = knob("transformer", "model kind: transformer, lstm, caml or snail (transformer: GPICL)")
    d_model: int = knob(128, "model width (transformer, caml, snail: also its filters and attention size) or lstm size")
    layers: int = knob(4, "Transformer blocks (transformer, caml), LSTM layers, or TC + attention blocks (snail)")
    heads: int = knob(1, "attention heads (not lstm); one head as wide as the model matches inputs best (transformer)")
    rotary_fraction: float = knob(0.0, "share of each attention head's dimensions given rotary positions (transformer)")
    input_rule: str = knob(
        "centre+basis+scale",
        "how inputs reach the model, from each episode's support: parts of centre+basis+scale, or standardise",
    )
    max_classes: int = knob(10, "label outputs of the model; N-way episodes use the first N")
    way: int = knob(10, "classes per meta-training task (the most, with min_way)")
    min_way: int = knob(2, "if set, each task's class count is uniform in [min_way, way] (0 = always way)")
    sequence_length: int = knob(60, "examples per meta-training sequence (L; the most, with min_length)")
    min_length: int = knob(2, "if set, each step's sequences have a length uniform in [min_length, sequence_length]")
    queries: int = knob(10, "query slots after each sequence, each read like an episode's query (sees the L examples)")
    balanced: float = knob(0.5, "share of sequences with equal class counts in a random order (like a support set)")
    mix_suite: float = knob(0.4, "share of each batch drawn from the source suites (projected when project is set)")
    mix_gaussian: float = knob(0.2, "share of synthetic Gaussian-mixture tasks (random subspaces, spectra, separation)")
    mix_nonlinear: float = knob(0.2, "share of synthetic tasks: clustered latents through a random tanh network")
    mix_fields: float = knob(0.2, "share of synthetic tasks: smooth random image-like fields, some squashed to strokes")
    tasks: int = knob(0, "number of distinct tasks: 0 = fresh tasks every step, else a finite pool (e.g. 2**13)")
    bias_fraction: float = knob(0.0, "share of every batch that uses one fixed label permutation (curriculum)")
    copy_fraction: float = knob(0.25, "share of every batch whose tasks repeat one fixed image per class")
    curriculum_steps: int = knob(
        500, "min_way and copy_fraction apply for this many steps, and on until the loss plateau is left (0 = always)"
    )
    project: bool = knob(True, "random linear projection per task (GPICL's augmentation)")
    batch_size: int = knob(128, "sequences per step (meta-batch size)")
    steps: int = knob(2000, "optimiser steps")
    time_budget: float = knob(0.0, "stop after this many seconds (0 = no limit)")
    lr: float = knob(3e-3, "Adam learning rate after warm-up (cosine decay to lr/10 at the last step)")
    adam_eps: float = knob(1e-8, "Adam epsilon (the paper: smaller helps to leave the loss plateau)")
    warmup: int = knob(100, "linear learning-rate warm-up steps")
    clip: float = knob(1.0, "gradient-norm clipping")
    seed: int = knob(0, "seed of the initialisation and the task stream")
    eval_every: int = knob(250, "steps between held-out evaluations")
    eval_episodes: int = knob(500, "episodes per held-out evaluation")
    eval_way: int = knob(5, "classes of the held-out episodes (5 queries per class, 'val' split)")
    eval_shot: int = knob(5, "shots of the held-out episodes")
    init: str = knob(
        "",
        "checkpoint whose weights meta-training starts from (same architecture), e.g. a second stage with its own "
        "schedule and task knobs (default: a fresh initialisation)",
    )
    weights_dtype: str = knob(
        "float32", "how the checkpoint stores its weights: float32, or float16 for half the file (computed in float32)"
    )

    def __post_init__(self) -> None:
        from gpicl_bench import checkpoints
        from gpicl_bench.learners import input_rule_grammar
        from gpicl_bench.learners.models import model_kind

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"training option {field.name} must be a finite number, got {value}")
        if not 0.0 <= self.rotary_fraction <= 1.0:
            raise UserError(f"training option rotary_fraction is a share between 0 and 1, got {self.rotary_fraction}")
        counts = ("batch_size", "steps", "eval_every", "eval_episodes", "eval_shot", "d_model", "layers", "heads")
        for name in counts:
            if getattr(self, name) < 1:
                raise UserError(f"training option {name} must be a positive whole number, got {getattr(self, name)}")
        if not 2 <= self.eval_way <= self.max_classes:
            raise UserError(f"eval_way must be between 2 and max_classes ({self.max_classes}), got {self.eval_way}")
        if self.lr <= 0 or self.adam_eps <= 0 or self.time_budget < 0 or self.warmup < 0 or self.clip <= 0:
            raise UserError("lr, adam_eps and clip must be positive; time_budget and warmup not negative")
        if self.weights_dtype not in checkpoints.WEIGHT_DTYPES:
            raise UserError(
                f"weights_dtype must be one of {', '.join(checkpoints.WEIGHT_DTYPES)}, got {self.weights_dtype!r}"
            )
        if self.way > self.max_classes:
            raise UserError(f"way ({self.way}) exceeds the model's max_classes ({self.max_classes})")
        if not model_kind(self.kind).causal and not self.queries:
            raise UserError(f"{self.kind} sees the context's labels and learns from query slots: queries must be ≥ 1")
        input_rule_grammar.check(self.input_rule)
        if self.init:  # found before any data is read; the architecture is compared once the data's size is known
            try:
                checkpoints.read_metadata(self.init)
            except UserError as error:
                raise UserError(f"training option init: {error}") from None
        self.distribution()  # the task knobs (ways, lengths, shares, mixture) are checked where they are used

    def model_config(self, input_dim: int) -> SequenceConfig:
        from gpicl_bench.learners.sequence import SequenceConfig

        return SequenceConfig(
            kind=self.kind,
            input_dim=input_dim,
            max_classes=self.max_classes,
            d_model=self.d_model,
            layers=self.layers,
            heads=self.heads,
            rotary_fraction=self.rotary_fraction,
            input_rule=self.input_rule,
        )

    def distribution(self, warming_up: bool = True) -> TaskDistribution:
        """The task distribution; after the curriculum (``warming_up`` False) without the plateau aids."""
        from gpicl_bench.task_distribution import SOURCES, TaskDistribution

        return TaskDistribution(
            way=self.way,
            min_way=self.min_way if warming_up else 0,
            length=self.sequence_length,
            min_length=self.min_length,
            queries=self.queries,
            balanced=self.balanced,
            tasks=self.tasks,
            bias_fraction=self.bias_fraction,
            copy_fraction=self.copy_fraction if warming_up else 0.0,
            project=self.project,
            mix=tuple(getattr(self, f"mix_{source}") for source in SOURCES),
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every knob but the model kind, at its default."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name != "kind"}

    @classmethod
    def from_values(cls, values: dict[str, Any], where: str) -> TrainingOptions:
        """Options from a spec or flags, each value checked against its field's type."""
        fields = {f.name: knob_type(f) for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in fields:
                raise UserError(f"{where}: unknown training option {key!r}; options: {', '.join(fields)}")
            expected = fields[key]
            valid = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
            if not valid and not (expected is float and isinstance(value, int) and not isinstance(value, bool)):
                raise UserError(f"{where}: option {key!r} must be {KNOB_NOUNS[expected]}, got {value!r}")
        return cls(**{k: float(v) if fields[k] is float else v for k, v in values.items()})
