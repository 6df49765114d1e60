"""The one meta-training layer: it fits the learners that declare a need for it, with the data a run opens.

Learners only predict (:mod:`gpicl_bench.learners.meta_training`). Before the engine times a learner it calls
:func:`fit`, which meta-trains what the learner declares — a sequence model through :func:`gpicl_bench.training.train`,
the very path ``gpicl-bench train`` takes, or a module on few-shot episodes of a source suite — and reads every source
as the run reads its suites: through the run's encoder, data root and feature cache, on its device, and, for
sequence models, on all of its processes at once (DistributedDataParallel, as ``train`` under torchrun). A sequence
learner's own ``encoder``, ``data_root`` and ``cache_dir`` options win over the run's where given.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import nn

from gpicl_bench import training
from gpicl_bench.distributed import Ranks
from gpicl_bench.episodes import STREAM_TASK_PROJECTION, EpisodeSampler, project, random_projections
from gpicl_bench.features import FeatureSettings
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.meta_training import EpisodicTraining, NeedsMetaTraining, Recipe
from gpicl_bench.learners.models import build_model
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.suites import OpenSuite, SplitData, open_suite

log = logging.getLogger(__name__)


def fit(
    learner: Learner,
    device: torch.device | str = "cpu",
    settings: FeatureSettings | None = None,
    ranks: Ranks = training.SINGLE_PROCESS,
    name: str = "",
) -> Learner:
    """Meta-train ``learner`` on ``device`` if it declares a need not met yet, reading sources with ``settings``
    (default: the default encoder, data root and cache); returns the learner, ready to predict. ``name`` names it in
    the log."""
    if not isinstance(learner, NeedsMetaTraining) or (recipe := learner.meta_training()) is None:
        return learner
    settings = dataclasses.replace(settings or FeatureSettings(), device=str(device))
    name = name or type(learner).__name__
    if isinstance(recipe, TrainingOptions):
        module, details = _fit_sequence_model(recipe, settings, ranks, name)
    else:
        module, details = _fit_on_episodes(recipe, settings, name)
    learner.fitted(module, details)
    return learner


def check(learner: Learner, settings: FeatureSettings | None = None) -> None:
    """Raise the user error that fitting ``learner`` would meet — sources that do not open, an extra that is not
    installed, a model its options cannot build — without meta-training; image sources are encoded here (or read from
    the cache), as a run's suites are before its first episode."""
    recipe: Recipe | None = learner.meta_training() if isinstance(learner, NeedsMetaTraining) else None
    settings = settings or FeatureSettings()
    if isinstance(recipe, TrainingOptions):
        options = with_run_data(recipe, settings)
        sources = training.source_settings(options, torch.device(settings.device), settings)
        training.source_data(options, "val", sources)
        build_model(options.model_config(training.source_data(options, "train", sources).dim))
    elif isinstance(recipe, EpisodicTraining):
        _, data = episode_source(recipe, settings)
        recipe.initial(data.dim)


def with_run_data(options: TrainingOptions, settings: FeatureSettings) -> TrainingOptions:
    """The options with the data settings they leave at their defaults taken from the run: encoder, data root and
    feature cache (so the options recorded with the fitted model say what it was trained on)."""
    default = TrainingOptions()
    return dataclasses.replace(
        options,
        encoder=settings.encoder if options.encoder == default.encoder else options.encoder,
        data_root=options.data_root or settings.data_root,
        cache_dir=options.cache_dir or settings.cache_dir,
    )


def episode_source(recipe: EpisodicTraining, settings: FeatureSettings) -> tuple[OpenSuite, SplitData]:
    """The source suite of episodic meta-training, opened with the run's settings, and its ``train`` split."""
    opened = open_suite(recipe.source, settings)
    return opened, opened.suite.load("train")


def _fit_sequence_model(
    recipe: TrainingOptions, settings: FeatureSettings, ranks: Ranks, name: str
) -> tuple[nn.Module, dict[str, Any]]:
    options = with_run_data(recipe, settings)
    log.info("meta-training %s for %d steps on %s", name, options.steps, options.source)
    on_log = _log_progress if ranks.is_main else None
    result = training.train(options, torch.device(settings.device), on_log, ranks, extraction=settings)
    metrics = result.metadata["metrics"]
    if ranks.is_main:  # rank 0 alone runs the held-out checks
        log.info(
            "meta-trained %s: seen-task accuracy %.1f%%, held-out (unseen tasks) %.1f%%",
            name,
            100 * metrics["seen_task_accuracy"],
            100 * metrics["held_out_accuracy"],
        )
    return result.model, result.metadata


def _fit_on_episodes(
    recipe: EpisodicTraining, settings: FeatureSettings, name: str
) -> tuple[nn.Module, dict[str, Any]]:
    device = torch.device(settings.device)
    opened, data = episode_source(recipe, settings)
    log.info("meta-training %s for %d steps on %s", name, recipe.steps, opened.label)
    features = data.features.to(device)
    where = f"split 'train' of {opened.label!r}"
    sampler = EpisodeSampler(data.labels.cpu(), recipe.shape, recipe.seed, where=where).to(device)
    torch.manual_seed(recipe.seed)
    module = recipe.initial(data.dim).to(device)
    optimiser = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    loss = torch.tensor(float("nan"))  # meta-training takes at least one step (the learner checks its options)
    for step in range(recipe.steps):
        ids = torch.arange(step * recipe.tasks_per_step, (step + 1) * recipe.tasks_per_step, device=device)
        batch = sampler.sample(ids)
        support_x, query_x = features[batch.support_index], features[batch.query_index]
        if opened.project:
            maps = random_projections(recipe.seed, ids, data.dim, stream=STREAM_TASK_PROJECTION)
            support_x, query_x = project(support_x, maps), project(query_x, maps)
        loss = recipe.loss(module, support_x, batch.support_labels, query_x, batch.query_labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return module, {"source": opened.label, "dim": data.dim, "final_meta_loss": loss.item()}


def _log_progress(entry: training.TrainingLog) -> None:
    if entry.held_out_accuracy is not None:
        log.info(
            "step %d/%d: loss %.3f, held-out accuracy %.1f%%",
            entry.step,
            entry.steps,
            entry.loss,
            100 * entry.held_out_accuracy,
        )
