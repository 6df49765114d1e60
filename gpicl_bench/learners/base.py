"""The learner interface: whole batches of episodes in, logits out, with no Python loop over episodes."""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor


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


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances [E, M, P] between rows of a [E, M, D] and b [E, P, D]."""
    cross = torch.bmm(a, b.transpose(1, 2))
    return (a.square().sum(-1)[:, :, None] - 2 * cross + b.square().sum(-1)[:, None, :]).clamp_min_(0)
