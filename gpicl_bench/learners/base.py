"""The learner interface: whole batches of episodes in, logits out, with no Python loop over episodes.

Also what learners share: class sums and means by label, squared distances, and the way metric learners read an
episode's rows straight from the feature table (:class:`FeatureTable`, :class:`EpisodeRows`, :class:`RowLearner`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

# Metric learners read episodes' rows in chunks of about this many bytes (the size of a core's L2 cache), so that a
# chunk is still in cache when it is used, and buffers stay small enough to be reused rather than freshly mapped.
CHUNK_BYTES = 2 << 20
MIN_CHUNK_EPISODES = 8  # wide features are still read several episodes at a time


class Learner(abc.ABC):
    """A few-shot learner. Options are keyword-only constructor arguments (see :mod:`gpicl_bench.registry`)."""

    # Whether renaming the classes of an episode (permuting its support labels) permutes the logits alike, by
    # construction; learners that read labels through learned label embeddings are not, and say so.
    relabelling_equivariant: ClassVar[bool] = True

    def to(self, device: torch.device | str) -> Learner:
        """Move any state (weights) to ``device``; stateless learners need nothing."""
        return self

    def details(self) -> dict[str, Any]:
        """What results should record about this learner beyond its name (e.g. its checkpoint); JSON-serialisable."""
        return {}

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        """Peak working memory one episode adds to a batch (for ``--batch-size auto``): by default a few copies of
        its inputs and of its query-by-support scores. Learners with larger intermediates say so."""
        rows = support + query
        return 4 * (4 * rows * dim + 4 * query * max(support, way))

    @abc.abstractmethod
    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        """Logits [E, Q, way] for queries [E, Q, D] given support [E, S, D] with labels [E, S] in 0..way-1."""


@runtime_checkable
class SequencePredictor(Protocol):
    """Learners that also read an episode as one sequence report an in-context learning curve."""

    def sequence_predictions(self, x: Tensor, y: Tensor, way: int, support: int) -> Tensor:
        """Predicted labels [E, T]: position t predicts y_t from examples 0..t−1 and x_t; the first ``support``
        positions are the episode's support, the rest its queries."""
        ...


class FeatureTable:
    """A split's features [N, D], which episodes index, with each row's squared norm taken once for all episodes."""

    def __init__(self, features: Tensor) -> None:
        self.features = features

    @functools.cached_property
    def squared_norms(self) -> Tensor:
        """[N]; row by row the same numbers as the squared norms of the gathered rows."""
        return self.features.square().sum(-1)


@dataclass(frozen=True)
class EpisodeRows:
    """The rows of a batch of episodes, left in their table: row m of episode e is ``table.features[index[e, m]]``.

    Gathering every episode's rows copies them into a fresh tensor, which costs more than reading them (on a CPU, a
    large fresh tensor is also page-faulted in). These methods read the rows where they are: sums by index, squared
    norms from the table, and everything else over cache-sized chunks of episodes gathered into one reused buffer.
    Every result of an episode depends on that episode's rows alone, however the batch is chunked.
    """

    table: FeatureTable
    index: Tensor  # [E, M] row numbers

    @classmethod
    def of(cls, x: Tensor) -> EpisodeRows:
        """Rows already gathered, [E, M, D], as a table of their own."""
        episodes, rows, dim = x.shape
        index = torch.arange(episodes * rows, device=x.device).view(episodes, rows)
        return cls(FeatureTable(x.reshape(episodes * rows, dim)), index)

    def columns(self, which: slice) -> EpisodeRows:
        """Some of each episode's rows, e.g. ``slice(0, S)``."""
        return EpisodeRows(self.table, self.index[:, which])

    def episodes(self, which: slice) -> EpisodeRows:
        """The rows of some of the episodes."""
        return EpisodeRows(self.table, self.index[which])

    def join(self, other: EpisodeRows) -> EpisodeRows:
        """Each episode's rows followed by its rows in ``other`` (the same table), to be read together."""
        if other.table is not self.table:
            raise ValueError("rows of different tables cannot be joined")
        return EpisodeRows(self.table, torch.cat([self.index, other.index], 1))

    @property
    def dim(self) -> int:
        return int(self.table.features.shape[1])

    def squared_norms(self) -> Tensor:
        """[E, M]."""
        return self.table.squared_norms[self.index]

    def class_sums(self, labels: Tensor, way: int) -> Tensor:
        """Per-class sums [E, way, D] of the rows, straight from the table: each sum adds its class's rows one by one
        in their order in the episode."""
        episodes = self.index.shape[0]
        order = torch.argsort(labels, dim=1, stable=True)
        counts = class_counts(labels, way).reshape(-1)
        sums = F.embedding_bag(
            torch.gather(self.index, 1, order).reshape(-1),
            self.table.features,
            torch.cumsum(counts, 0) - counts,
            mode="sum",
        )
        return sums.view(episodes, way, self.dim)

    def class_means(self, labels: Tensor, way: int) -> Tensor:
        """Per-class means [E, way, D] (NaN for a class without rows)."""
        return self.class_sums(labels, way) / class_counts(labels, way)[:, :, None].to(self.table.features.dtype)

    def map(self, fn: Callable[[Tensor, slice], Tensor]) -> Tensor:
        """``fn(rows, episodes)`` over chunks of episodes — ``rows`` [e, M, D] of the episodes in the slice
        ``episodes`` — stacked into one tensor [E, …]. ``rows`` is a reused buffer (unless gradients flow to the
        table): ``fn`` must not keep it."""
        episodes, per_episode = self.index.shape
        dim, features = self.dim, self.table.features
        chunk = episodes
        if features.device.type == "cpu":  # GPUs gather and allocate cheaply: one chunk
            chunk = max(MIN_CHUNK_EPISODES, CHUNK_BYTES // (per_episode * dim * features.element_size()))
        differentiable = features.requires_grad and torch.is_grad_enabled()
        buffer = features.new_empty(0 if differentiable else min(chunk, episodes) * per_episode, dim)
        out: Tensor | None = None
        for start in range(0, episodes, chunk):
            part = slice(start, min(start + chunk, episodes))
            count = part.stop - start
            index = self.index[part].reshape(-1)
            if differentiable:  # out= buffers are outside autograd: a learner meta-trained through predict gets copies
                rows = torch.index_select(features, 0, index)
            else:
                rows = torch.index_select(features, 0, index, out=buffer[: count * per_episode])
            result = fn(rows.view(count, per_episode, dim), part)
            if out is None:
                out = result.new_empty(episodes, *result.shape[1:])
            out[part] = result
        assert out is not None, "a batch has at least one episode"
        return out


class RowLearner(Learner):
    """A learner that reads episodes as :class:`EpisodeRows`: on unprojected suites the engine hands it the feature
    table and each episode's row numbers; ``predict`` on gathered rows makes them a table (support and queries in
    one, as in the engine) and gives the very same logits."""

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        rows = EpisodeRows.of(torch.cat([support_x, query_x], 1))
        shots = support_x.shape[1]
        return self.predict_rows(rows.columns(slice(0, shots)), support_y, rows.columns(slice(shots, None)), way)

    @abc.abstractmethod
    def predict_rows(self, support: EpisodeRows, support_y: Tensor, query: EpisodeRows, way: int) -> Tensor:
        """Logits [E, Q, way], as :meth:`Learner.predict`, with support and queries left in their table."""


def class_counts(labels: Tensor, way: int) -> Tensor:
    """Examples of each class [E, way] among labels [E, S]."""
    return F.one_hot(labels, way).sum(1)


def class_means(x: Tensor, labels: Tensor, way: int) -> Tensor:
    """Per-class means [E, way, D] of rows x [E, S, D] with labels [E, S] (NaN for a class without rows)."""
    return EpisodeRows.of(x).class_means(labels, way)


def combine_squared_distances(a_norms: Tensor, cross: Tensor, b_norms: Tensor) -> Tensor:
    """Squared distances [E, M, P] from squared norms a [E, M], b [E, P] and inner products [E, M, P]."""
    return (a_norms[:, :, None] - 2 * cross + b_norms[:, None, :]).clamp_min_(0)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances [E, M, P] between rows of a [E, M, D] and b [E, P, D]."""
    return combine_squared_distances(a.square().sum(-1), torch.bmm(a, b.transpose(1, 2)), b.square().sum(-1))
