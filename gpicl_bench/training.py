"""Meta-training of sequence learners on GPICL's task distribution, and the checkpoint it produces.

The loop: a batch of task sequences from :mod:`gpicl_bench.tasks` (the source suites and synthetic families, in the
shares the ``mix_*`` knobs set), read through the model's input rule, cross-entropy over the task's classes at every
position (a non-causal model, which sees the context's labels: at every query slot), Adam with linear warm-up and
gradient-norm clipping. Every ``eval_every`` steps, and at the end, the
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

from gpicl_bench import atomic, checkpoints, distributed, training_state
from gpicl_bench.distributed import Ranks
from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.features import FeatureSettings
from gpicl_bench.learners.models import build_model, load_model
from gpicl_bench.learners.sequence import SequenceLearner, SequenceModel, make_tokens, prepare_inputs, shift_labels
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.suites import SplitData, open_suite
from gpicl_bench.tasks import TaskBatch, TaskStream

PLATEAU_EXIT = 0.8  # the loss has left the plateau once the smoothed loss of regular tasks is below 80% of chance
HELD_OUT_QUERIES = 5
SEEN_SEQUENCES = 256
SINGLE_PROCESS = Ranks()
HELD_OUT_SEED = 1_000_003  # seed of the held-out episodes (val split, evaluation projection stream)


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
    def of(cls, options: TrainingOptions, settings: FeatureSettings) -> HeldOut:
        data = source_data(options, "val", settings)
        shape = EpisodeShape(options.eval_way, options.eval_shot, HELD_OUT_QUERIES)
        sampler = EpisodeSampler(data.labels, shape, HELD_OUT_SEED, where=f"split 'val' of {options.source!r}")
        return cls(data, sampler.to(data.features.device), options.eval_episodes)

    def accuracy(self, model: SequenceModel) -> float:
        was_training = model.training
        learner = SequenceLearner(model)
        correct = evaluate_group(learner, self.data, self.sampler, range(self.episodes), 250, True).correct
        model.train(was_training)
        return float(np.mean(correct)) / (self.sampler.shape.way * HELD_OUT_QUERIES)


def source_settings(
    options: TrainingOptions, device: torch.device, extraction: FeatureSettings | None = None
) -> FeatureSettings:
    """How the training sources become features on ``device``: through the options' encoder, data root and cache;
    a run's own settings (``extraction``) add how it reads images (progress, decoding threads, unreadable images)."""
    base = extraction or FeatureSettings()
    return dataclasses.replace(
        base, encoder=options.encoder, data_root=options.data_root, cache_dir=options.cache_dir, device=str(device)
    )


def source_labels(options: TrainingOptions, settings: FeatureSettings) -> list[str]:
    """The canonical labels of the training sources (image sources name their encoder)."""
    return [open_suite(text, settings).label for text in _source_texts(options)]


def source_data(options: TrainingOptions, split: str, settings: FeatureSettings) -> SplitData:
    """One split of all training sources on the settings' device, classes of different sources kept apart; image
    sources are read through the encoder and the feature cache, so universal meta-training runs on cached features."""
    parts = [open_suite(text, settings) for text in _source_texts(options)]
    loaded = [(part.label, part.suite.load(split)) for part in parts]
    dims = {data.dim for _, data in loaded}
    if len(dims) > 1:
        raise UserError(f"training sources have different feature sizes {sorted(dims)}; use one encoder for all")
    offsets = np.cumsum([0] + [len(data.class_names) for _, data in loaded])
    features = torch.cat([data.features for _, data in loaded])
    labels = torch.cat([data.labels + int(offset) for (_, data), offset in zip(loaded, offsets[:-1], strict=True)])
    names = tuple(f"{label}/{name}" if len(loaded) > 1 else name for label, data in loaded for name in data.class_names)
    device = torch.device(settings.device)
    return SplitData(features.to(device), labels.to(device), names)


def _source_texts(options: TrainingOptions) -> list[str]:
    texts = [text.strip() for text in options.source.split("+")]
    if not all(texts):
        raise UserError(f"malformed training source {options.source!r}: empty name between '+'")
    return texts


def seen_task_accuracy(model: SequenceModel, stream: TaskStream, options: TrainingOptions) -> float:
    """Accuracy on meta-training tasks: the sequences of step 0 (training never draws step 0, but a finite pool's
    tasks recur at every step), at the second half of each context, where the task has been shown (a non-causal
    model's at the query slots). Set beside the held-out accuracy it separates memorising tasks from learning to
    learn (GPICL's task-count transition)."""
    was_training = model.training
    model.eval()
    batch = stream.batch(0, SEEN_SEQUENCES)
    with torch.no_grad():
        logits = batch_logits(model, batch, options)
    model.train(was_training)
    correct = logits.argmax(-1) == scored_labels(model, batch)
    if model.causal:
        correct = correct[:, batch.context // 2 : batch.context]
    return float(correct[batch.regular].float().mean()) if batch.regular.any() else float("nan")


def disk_needed(model: SequenceModel) -> int:
    """Bytes a run writes beside its checkpoint at most at once: the old and the new training state (float32 weights
    and Adam's two moments each) while one replaces the other, and the checkpoint (float32 at most)."""
    parameters = sum(p.numel() for p in model.parameters())
    return 2 * 3 * 4 * parameters + 4 * parameters


def start_from_checkpoint(model: SequenceModel, path: str) -> str:
    """Give ``model`` the weights of the checkpoint at ``path`` (the ``init`` knob) and return their identity: a later
    stage of meta-training continues an earlier one with its own schedule and tasks. The checkpoint must hold the
    architecture the options build, input rule included, so that the stages describe one model."""
    loaded, _ = load_model(path)
    if loaded.config != model.config:
        ours, theirs = model.config.to_dict(), loaded.config.to_dict()
        differences = ", ".join(
            f"{name} {theirs[name]!r} (options: {ours[name]!r})" for name in ours if ours[name] != theirs[name]
        )
        raise UserError(f"init checkpoint {path} holds another architecture: {differences}")
    model.load_state_dict(loaded.state_dict())
    return checkpoints.identity(path)  # taken now: the file may change while a long run trains


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


def _unwrapped(model: SequenceModel | DistributedDataParallel) -> SequenceModel:
    return model.module if isinstance(model, DistributedDataParallel) else model


def scored_labels(model: SequenceModel | DistributedDataParallel, batch: TaskBatch) -> Tensor:
    """The labels of the positions that :func:`batch_logits` scores: every position [B, L+Q] for a causal model,
    which predicts each example from those before it; the query slots [B, Q] for a non-causal one."""
    return batch.labels if _unwrapped(model).causal else batch.labels[:, batch.context :]


def batch_logits(model: SequenceModel | DistributedDataParallel, batch: TaskBatch, options: TrainingOptions) -> Tensor:
    """Logits at the positions :func:`scored_labels` gives: causal over the context, and each query slot read after
    the whole context (through the model's ``forward``, so that DistributedDataParallel sees the pass); classes a
    task lacks are -inf."""
    inner = _unwrapped(model)
    x = prepare_inputs(inner.config, batch.x, batch.context)
    if options.queries:
        length = batch.context
        tokens = inner.episode_tokens(x[:, :length], batch.labels[:, :length], x[:, length:])
    else:
        tokens = (make_tokens(x, shift_labels(batch.labels), options.max_classes),)
    logits = model(*tokens)[..., : options.way]
    absent = torch.arange(options.way, device=logits.device)[None, :] >= batch.ways[:, None]
    return logits.masked_fill(absent[:, None, :], float("-inf"))


def position_losses(
    network: SequenceModel | DistributedDataParallel, batch: TaskBatch, options: TrainingOptions
) -> Tensor:
    """The cross-entropy at every position :func:`batch_logits` scores: the meta-training loss before its mean."""
    logits = batch_logits(network, batch, options)
    return F.cross_entropy(logits.transpose(1, 2), scored_labels(network, batch), reduction="none")


def optimisation_step(
    network: SequenceModel | DistributedDataParallel,
    batch: TaskBatch,
    options: TrainingOptions,
    optimiser: torch.optim.Optimizer,
) -> Tensor:
    """One meta-training step on ``batch``: Adam on the mean loss, gradients clipped to ``options.clip``; returns
    the position losses (their statistics steer the curriculum)."""
    losses = position_losses(network, batch, options)
    optimiser.zero_grad(set_to_none=True)
    losses.mean().backward()
    torch.nn.utils.clip_grad_norm_(_unwrapped(network).parameters(), options.clip)
    optimiser.step()
    return losses


def train(
    options: TrainingOptions,
    device: torch.device,
    on_log: Callable[[TrainingLog], None] | None = None,
    ranks: Ranks = SINGLE_PROCESS,
    state: Path | None = None,
    extraction: FeatureSettings | None = None,
) -> TrainingResult:
    """Meta-train a sequence model from scratch (or from the ``init`` checkpoint's weights), or from ``state`` when that
    file exists; deterministic on one device for given options, resumed or not. With ``state``, rank 0 saves the run
    there at every held-out check and when the time budget ends it (:mod:`gpicl_bench.training_state`).
    ``extraction``: how images are read (see :func:`source_settings`).

    Under torchrun each rank computes its contiguous share of every batch's sequences (the task stream is a pure
    function of step and sequence) and DistributedDataParallel averages the gradients, which is the full batch's
    mean gradient; the loss statistics that steer the curriculum are summed over ranks, so every rank takes the same
    decisions. Rank 0 alone runs the held-out checks and reports.
    """
    if options.batch_size % ranks.world_size:
        raise UserError(f"batch_size ({options.batch_size}) must be a multiple of the {ranks.world_size} processes")
    share = ranks.shard(options.batch_size)
    settings = source_settings(options, device, extraction)
    data = source_data(options, "train", settings)
    held_out = HeldOut.of(options, settings)
    warm_up_stream = TaskStream(data, options.distribution(warming_up=True))
    main_stream = TaskStream(data, options.distribution(warming_up=False))
    torch.manual_seed(options.seed)
    model = build_model(options.model_config(data.dim))  # initialised on the CPU: same on any device
    initial_weights = start_from_checkpoint(model, options.init) if options.init else None
    if state is not None and ranks.is_main:
        atomic.check_free_space(state, disk_needed(model), "meta-training")
    model.to(device).train()
    network: SequenceModel | DistributedDataParallel = model
    if ranks.distributed:
        network = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, eps=options.adam_eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, partial(learning_rate_factor, options))

    smoothed, plateau_exit, history = expected_chance_loss(options), None, []
    first_step, earlier_seconds = 1, 0.0
    if state is not None and state.is_file():
        saved = training_state.load(state, options.to_dict(), TrainingOptions.defaults())
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        smoothed, plateau_exit, history = saved["smoothed"], saved["plateau_exit"], saved["history"]
        first_step, earlier_seconds = saved["step"] + 1, saved["seconds"]
        initial_weights = saved.get("initial_weights")  # the weights the run began with (absent: states before init)
    started = time.perf_counter() - earlier_seconds
    step = first_step - 1
    for step in range(first_step, options.steps + 1):
        in_curriculum = not options.curriculum_steps or step <= options.curriculum_steps or plateau_exit is None
        stream = warm_up_stream if in_curriculum else main_stream
        batch = stream.batch(step, options.batch_size, share.start, len(share))
        losses = optimisation_step(network, batch, options, optimiser)
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
        carried = dict(
            step=step,
            seconds=elapsed,
            smoothed=smoothed,
            plateau_exit=plateau_exit,
            history=history,
            initial_weights=initial_weights,
        )
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
            "sources": source_labels(options, settings),
            "split": "train",
            "dim": data.dim,
            "classes": len(data.class_names),
        },
        "seed": options.seed,
        "initial_weights": initial_weights,
        "steps": step,
        "seconds": time.perf_counter() - started,
        "device": device.type,
        "processes": ranks.world_size,
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
