"""Meta-training of sequence learners on GPICL's task distribution, and the checkpoint it produces.

The loop: a batch of task sequences from :mod:`gpicl_bench.tasks` (the source suites and synthetic families, in the
shares the ``mix_*`` knobs set), read through the model's input rule, cross-entropy at every position over the
task's classes, Adam with linear warm-up and gradient-norm clipping. Every ``eval_every`` steps, and at the end, the
model is evaluated as a few-shot learner on the source's ``val`` split with randomly projected episodes — projections
from the evaluation stream, which training never sees — and, with a state file, the run is saved for ``--resume``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from gpicl_bench import checkpoints, distributed, training_state
from gpicl_bench.distributed import Ranks
from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.features import FeatureSettings
from gpicl_bench.learners import input_rule
from gpicl_bench.learners.sequence import (
    SequenceConfig,
    SequenceLearner,
    SequenceModel,
    episode_tokens,
    make_tokens,
    prepare_inputs,
    shift_labels,
)
from gpicl_bench.suites import SplitData, open_suite
from gpicl_bench.tasks import SOURCES, TaskBatch, TaskDistribution, TaskStream

_KNOB_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
KNOB_NOUNS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
PLATEAU_EXIT = 0.8  # the loss has left the plateau once the smoothed loss of regular tasks is below 80% of chance
HELD_OUT_QUERIES = 5
SEEN_SEQUENCES = 256
SINGLE_PROCESS = Ranks()
HELD_OUT_SEED = 1_000_003  # seed of the held-out episodes (val split, evaluation projection stream)


def knob_type(field: dataclasses.Field[Any]) -> type:
    """The type of a training knob (annotations are strings here, under postponed evaluation)."""
    return _KNOB_TYPES[str(field.type)]


def knob(default: Any, help: str) -> Any:
    """A training option with the help text that ``gpicl-bench train --help`` shows."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingOptions:
    """Every knob of meta-training. The defaults leave the loss plateau reliably; the shipped checkpoint's recipe
    (benchmarks/gpicl-mixed-train.toml) is these with a wider model, more steps and float16 storage."""

    source: str = knob(
        "digits",
        "suite reference(s) whose 'train' splits provide the inputs, joined by '+' (e.g. digits, cub+aircraft)",
    )
    encoder: str = knob("pixels", "encoder of image sources (their features come from the feature cache)")
    data_root: str = knob("", "folder of the image sources' data (default: $GPICL_BENCH_DATA)")
    cache_dir: str = knob("", "feature cache folder (default: $GPICL_BENCH_CACHE or ~/.cache/gpicl-bench)")
    kind: str = knob("transformer", "model: transformer (GPICL) or lstm")
    d_model: int = knob(128, "model width (transformer) or hidden size (lstm)")
    layers: int = knob(4, "number of Transformer blocks or LSTM layers")
    heads: int = knob(1, "attention heads (transformer); one head as wide as the model matches inputs best")
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
    weights_dtype: str = knob(
        "float32", "how the checkpoint stores its weights: float32, or float16 for half the file (computed in float32)"
    )

    def __post_init__(self) -> None:
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
        input_rule.check(self.input_rule)
        self.distribution()  # the task knobs (ways, lengths, shares, mixture) are checked where they are used

    def model_config(self, input_dim: int) -> SequenceConfig:
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


@dataclass(frozen=True)
class TrainingLog:
    """One progress report: step, smoothed training loss, and held-out accuracy when just measured."""

    step: int
    steps: int
    loss: float
    held_out_accuracy: float | None
    seconds: float


@dataclass
class TrainingResult:
    model: SequenceModel
    metadata: dict[str, Any]


@dataclass(frozen=True)
class HeldOut:
    """The held-out check of meta-training: projected ``eval_way``-way ``eval_shot``-shot episodes of the ``val`` split,
    loaded and placed on the device once per run, each read once (one view, one order)."""

    data: SplitData
    sampler: EpisodeSampler
    episodes: int

    @classmethod
    def of(cls, options: TrainingOptions, device: torch.device) -> HeldOut:
        data = source_data(options, "val", device)
        shape = EpisodeShape(options.eval_way, options.eval_shot, HELD_OUT_QUERIES)
        sampler = EpisodeSampler(data.labels, shape, HELD_OUT_SEED, where=f"split 'val' of {options.source!r}")
        return cls(data, sampler.to(device), options.eval_episodes)

    def accuracy(self, model: SequenceModel) -> float:
        was_training = model.training
        learner = SequenceLearner(model)
        correct = evaluate_group(learner, self.data, self.sampler, range(self.episodes), 250, True).correct
        model.train(was_training)
        return float(np.mean(correct)) / (self.sampler.shape.way * HELD_OUT_QUERIES)


def source_labels(options: TrainingOptions, device: torch.device) -> list[str]:
    """The canonical labels of the training sources (image sources name their encoder)."""
    return [open_suite(text, _settings(options, device)).label for text in _source_texts(options)]


def source_data(options: TrainingOptions, split: str, device: torch.device) -> SplitData:
    """One split of all training sources on ``device``, classes of different sources kept apart; image sources are
    read through the encoder and the feature cache, so universal meta-training runs on cached features."""
    parts = [open_suite(text, _settings(options, device)) for text in _source_texts(options)]
    loaded = [(part.label, part.suite.load(split)) for part in parts]
    dims = {data.dim for _, data in loaded}
    if len(dims) > 1:
        raise UserError(f"training sources have different feature sizes {sorted(dims)}; use one encoder for all")
    offsets = np.cumsum([0] + [len(data.class_names) for _, data in loaded])
    features = torch.cat([data.features for _, data in loaded])
    labels = torch.cat([data.labels + int(offset) for (_, data), offset in zip(loaded, offsets[:-1], strict=True)])
    names = tuple(f"{label}/{name}" if len(loaded) > 1 else name for label, data in loaded for name in data.class_names)
    return SplitData(features.to(device), labels.to(device), names)


def _source_texts(options: TrainingOptions) -> list[str]:
    texts = [text.strip() for text in options.source.split("+")]
    if not all(texts):
        raise UserError(f"malformed training source {options.source!r}: empty name between '+'")
    return texts


def _settings(options: TrainingOptions, device: torch.device) -> FeatureSettings:
    return FeatureSettings(options.encoder, options.data_root, options.cache_dir, str(device))


def seen_task_accuracy(model: SequenceModel, stream: TaskStream, options: TrainingOptions) -> float:
    """Accuracy on meta-training tasks: the sequences of step 0 (training never draws step 0, but a finite pool's
    tasks recur at every step), at the second half of each context, where the task has been shown. Set beside the
    held-out accuracy it separates memorising tasks from learning to learn (GPICL's task-count transition)."""
    was_training = model.training
    model.eval()
    batch = stream.batch(0, SEEN_SEQUENCES)
    with torch.no_grad():
        logits = batch_logits(model, batch, options)
    model.train(was_training)
    predictions = logits.argmax(-1)
    start = batch.context // 2
    correct = (predictions == batch.labels)[:, start : batch.context]
    return float(correct[batch.regular].float().mean()) if batch.regular.any() else float("nan")


def learning_rate_factor(options: TrainingOptions, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to a tenth of ``lr`` at ``steps``."""
    if step < options.warmup:
        return (step + 1) / options.warmup
    progress = min(1.0, (step - options.warmup) / max(1, options.steps - options.warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def expected_chance_loss(options: TrainingOptions, warming_up: bool = True) -> float:
    """The loss of guessing uniformly, averaged over the task sizes: the level of the plateau."""
    ways = range((options.min_way if warming_up else 0) or options.way, options.way + 1)
    return sum(math.log(w) for w in ways) / len(ways)


def batch_logits(model: SequenceModel | DistributedDataParallel, batch: TaskBatch, options: TrainingOptions) -> Tensor:
    """Logits [B, L+Q, way]: causal over the context, and each query slot read after the whole context (through
    the model's ``forward``, so that DistributedDataParallel sees the pass); classes a task lacks are -inf."""
    config = (model.module if isinstance(model, DistributedDataParallel) else model).config
    x = prepare_inputs(config, batch.x, batch.context)
    if options.queries:
        length = batch.context
        tokens = episode_tokens(x[:, :length], batch.labels[:, :length], x[:, length:], options.max_classes)
    else:
        tokens = (make_tokens(x, shift_labels(batch.labels), options.max_classes),)
    logits = model(*tokens)[..., : options.way]
    absent = torch.arange(options.way, device=logits.device)[None, :] >= batch.ways[:, None]
    return logits.masked_fill(absent[:, None, :], float("-inf"))


def train(
    options: TrainingOptions,
    device: torch.device,
    on_log: Callable[[TrainingLog], None] | None = None,
    ranks: Ranks = SINGLE_PROCESS,
    state: Path | None = None,
) -> TrainingResult:
    """Meta-train a sequence model from scratch, or from ``state`` when that file exists; deterministic on one
    device for given options, resumed or not. With ``state``, rank 0 saves the run there at every held-out check and
    when the time budget ends it (:mod:`gpicl_bench.training_state`).

    Under torchrun each rank computes its contiguous share of every batch's sequences (the task stream is a pure
    function of step and sequence) and DistributedDataParallel averages the gradients, which is the full batch's
    mean gradient; the loss statistics that steer the curriculum are summed over ranks, so every rank takes the same
    decisions. Rank 0 alone runs the held-out checks and reports.
    """
    if options.batch_size % ranks.world_size:
        raise UserError(f"batch_size ({options.batch_size}) must be a multiple of the {ranks.world_size} processes")
    share = ranks.shard(options.batch_size)
    data = source_data(options, "train", device)
    held_out = HeldOut.of(options, device)
    warm_up_stream = TaskStream(data, options.distribution(warming_up=True))
    main_stream = TaskStream(data, options.distribution(warming_up=False))
    torch.manual_seed(options.seed)
    model = checkpoints.build_model(options.model_config(data.dim))  # initialised on the CPU: same on any device
    model.to(device).train()
    network: SequenceModel | DistributedDataParallel = model
    if ranks.distributed:
        network = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, eps=options.adam_eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, partial(learning_rate_factor, options))

    smoothed, plateau_exit, history = expected_chance_loss(options), None, []
    first_step, earlier_seconds = 1, 0.0
    if state is not None and state.is_file():
        saved = training_state.load(state, options.to_dict())
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        smoothed, plateau_exit, history = saved["smoothed"], saved["plateau_exit"], saved["history"]
        first_step, earlier_seconds = saved["step"] + 1, saved["seconds"]
    started = time.perf_counter() - earlier_seconds
    step = first_step - 1
    for step in range(first_step, options.steps + 1):
        in_curriculum = not options.curriculum_steps or step <= options.curriculum_steps or plateau_exit is None
        stream = warm_up_stream if in_curriculum else main_stream
        batch = stream.batch(step, options.batch_size, share.start, len(share))
        logits = batch_logits(network, batch, options)
        losses = F.cross_entropy(logits.transpose(1, 2), batch.labels, reduction="none")  # [B, L]
        loss = losses.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip)
        optimiser.step()
        schedule.step()

        chance = expected_chance_loss(options, in_curriculum)
        elapsed = time.perf_counter() - started
        out_of_time = ranks.is_main and options.time_budget and elapsed >= options.time_budget  # rank 0's clock
        regular = losses[batch.regular]
        totals = torch.stack([regular.sum(), torch.tensor(float(regular.numel()), device=device)]).detach()
        totals = distributed.all_sum(ranks, torch.cat([totals, torch.tensor([float(out_of_time)], device=device)]))
        regular_loss = (totals[0] / totals[1]).item() if totals[1] > 0 else chance
        out_of_time = bool(totals[2] > 0)
        smoothed = 0.95 * smoothed + 0.05 * regular_loss
        if plateau_exit is None and smoothed < PLATEAU_EXIT * chance:
            plateau_exit = step
        accuracy = None
        last_step = step == options.steps or out_of_time
        saving = state is not None and ranks.is_main and step < options.steps
        saving = saving and (out_of_time or step % options.eval_every == 0)
        # what the loop carries from step to step besides the weights (the history list is shared)
        carried = dict(step=step, seconds=elapsed, smoothed=smoothed, plateau_exit=plateau_exit, history=history)
        if saving and out_of_time:  # before the last step's rounding of the weights to their storage type
            _save_state(state, options, carried, model, optimiser, schedule)
        if (step % options.eval_every == 0 or last_step) and ranks.is_main:
            if last_step:  # training is over: the last metrics describe the weights as the checkpoint stores them
                checkpoints.round_to_storage(model, options.weights_dtype)
            accuracy = held_out.accuracy(model)
            seen = seen_task_accuracy(model, main_stream, options)
            history.append(
                {
                    "step": step,
                    "regular_loss": smoothed,
                    "held_out_accuracy": accuracy,
                    "seen_task_accuracy": seen,
                    "seconds": elapsed,
                }
            )
        if saving and not out_of_time:  # after the check, so its entry is kept
            _save_state(state, options, carried, model, optimiser, schedule)
        if on_log is not None:
            on_log(TrainingLog(step, options.steps, smoothed, accuracy, elapsed))
        if out_of_time:
            break

    model.eval()
    metadata = {
        "training": options.to_dict(),
        "data": {
            "sources": source_labels(options, device),
            "split": "train",
            "dim": data.dim,
            "classes": len(data.class_names),
        },
        "seed": options.seed,
        "steps": step,
        "seconds": time.perf_counter() - started,
        "device": device.type,
        "torch_version": str(torch.__version__),
        "metrics": {
            "final_loss": smoothed,
            "chance_loss": expected_chance_loss(options, warming_up=False),
            "plateau_exit_step": plateau_exit,
            "held_out_accuracy": history[-1]["held_out_accuracy"] if history else None,
            "seen_task_accuracy": history[-1]["seen_task_accuracy"] if history else None,
            "weights": f"the last step's accuracies are measured on the weights as stored ({options.weights_dtype})",
            "seen_tasks": f"{SEEN_SEQUENCES} meta-training sequences of step 0, second half of each context",
            "held_out": f"{options.eval_way}-way {options.eval_shot}-shot projected episodes of 'val'",
            "history": history,
        },
    }
    return TrainingResult(model, metadata)


def _save_state(
    path: Path,
    options: TrainingOptions,
    carried: dict[str, Any],
    model: SequenceModel,
    optimiser: torch.optim.Optimizer,
    schedule: Any,
) -> None:
    weights = {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict()}
    training_state.save(path, {"options": options.to_dict(), **carried, **weights})


def train_to_checkpoint(
    options: TrainingOptions,
    device: torch.device,
    out: Path,
    on_log: Callable[[TrainingLog], None] | None = None,
    ranks: Ranks = SINGLE_PROCESS,
    resume: bool = False,
    force: bool = False,
) -> Path:
    """Meta-train and save the checkpoint (rank 0 writes it); returns its weights path. The output is checked before
    training starts, so a bad path costs no training time, and an existing checkpoint is replaced only if ``force``
    — or by the run that wrote it, resumed. The run's state is kept beside the checkpoint until training completes;
    ``resume`` continues from it."""
    weights = checkpoints.paths(out)[0]
    state = training_state.path_for(weights)
    if resume and not state.is_file():
        raise UserError(f"nothing to resume: {state} not found")
    if not resume and state.is_file():
        raise UserError(f"{state} holds an unfinished run for this checkpoint: add --resume, or delete it")
    if ranks.is_main:
        checkpoints.check_target(out, force or resume)
    result = train(options, device, on_log, ranks, state)
    if not ranks.is_main:
        return weights
    checkpoints.check_target(out, force or resume)  # it may have appeared meanwhile
    path = checkpoints.save(out, result.model, result.metadata, options.weights_dtype)
    if result.metadata["steps"] == options.steps:
        state.unlink(missing_ok=True)
    return path
