"""Batched evaluation of one learner on one episode sampler: the hot loop every command shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gpicl_bench.episodes import EpisodeSampler, project, query_order, random_projections
from gpicl_bench.learners.base import EpisodeRows, FeatureTable, Learner, RowLearner, SequencePredictor
from gpicl_bench.suites.base import SplitData

CURVE_EPISODES = 1000  # the in-context learning curve is the mean over the first episodes only: it costs a forward


@dataclass(frozen=True)
class Evaluation:
    """Correct queries per evaluated episode and, for sequence learners, the correct predictions at each position of
    the sequence view summed over the evaluated episodes among the first ``CURVE_EPISODES``."""

    correct: np.ndarray
    position_correct: np.ndarray | None
    curve_episodes: int

    @property
    def position_accuracy(self) -> np.ndarray | None:
        """The in-context learning curve: accuracy at each position."""
        if self.position_correct is None or not self.curve_episodes:
            return None
        return self.position_correct / self.curve_episodes

    @staticmethod
    def merge(parts: list[Evaluation]) -> Evaluation:
        """One evaluation from those of consecutive shares of the episodes (in order)."""
        curves = [part.position_correct for part in parts if part.position_correct is not None]
        return Evaluation(
            np.concatenate([part.correct for part in parts]),
            np.sum(curves, axis=0) if curves else None,
            sum(part.curve_episodes for part in parts),
        )


def evaluate_group(
    learner: Learner,
    data: SplitData,
    sampler: EpisodeSampler,
    episodes: range,
    batch_size: int,
    project_inputs: bool,
    on_batch: Callable[[int], None] | None = None,
    with_curve: bool = False,
) -> Evaluation:
    """Evaluate the given episode ids batch by batch on the data's device (``with_curve``: also the in-context
    learning curve of learners that read sequences). Any share of the ids gives the same per-episode results."""
    device = data.features.device
    way = sampler.shape.way
    correct = torch.empty(len(episodes), dtype=torch.int64, device=device)
    curve = with_curve and isinstance(learner, SequencePredictor)
    length = way * (sampler.shape.shot + sampler.shape.query)
    position_correct = torch.zeros(length, dtype=torch.int64, device=device)
    # Learners that read rows by index get the feature table itself whenever their inputs are its rows as they are.
    reads_table = isinstance(learner, RowLearner) and not project_inputs and not curve
    table = FeatureTable(data.features) if reads_table else None
    with torch.inference_mode():
        for offset in range(0, len(episodes), batch_size):
            first = episodes.start + offset
            ids = torch.arange(first, min(first + batch_size, episodes.stop), device=device)
            batch = sampler.sample(ids)
            if table is not None:
                support, query = EpisodeRows(table, batch.support_index), EpisodeRows(table, batch.query_index)
                logits = learner.predict_rows(support, batch.support_labels, query, way)
            else:
                maps = random_projections(sampler.seed, ids, data.dim) if project_inputs else None
                support_x, query_x = _inputs(data, batch.support_index, maps), _inputs(data, batch.query_index, maps)
                logits = learner.predict(support_x, batch.support_labels, query_x, way)
            correct[offset : offset + len(ids)] = (logits.argmax(-1) == batch.query_labels).sum(-1)
            if curve and first < CURVE_EPISODES:
                kept = min(len(ids), CURVE_EPISODES - first)
                order = query_order(batch, sampler.seed)[:kept]
                inputs = torch.cat([support_x[:kept], _take(query_x[:kept], order)], 1)
                labels = torch.cat([batch.support_labels[:kept], torch.gather(batch.query_labels[:kept], 1, order)], 1)
                position_correct += (
                    learner.sequence_predictions(inputs, labels, way, support_x.shape[1]) == labels
                ).sum(0)
            if on_batch is not None:
                on_batch(offset + len(ids))
    curve_episodes = max(0, min(episodes.stop, CURVE_EPISODES) - episodes.start) if curve else 0
    return Evaluation(correct.cpu().numpy(), position_correct.cpu().numpy() if curve else None, curve_episodes)


def _take(rows: Tensor, order: Tensor) -> Tensor:
    """Rows [E, M, d] reordered per episode by ``order`` [E, M]."""
    return torch.gather(rows, 1, order[..., None].expand(-1, -1, rows.shape[-1]))


def _inputs(data: SplitData, rows: Tensor, maps: Tensor | None) -> Tensor:
    """Features of the given rows [E, M], through each episode's projection when the suite is projected."""
    features = data.features[rows]
    return project(features, maps) if maps is not None else features
