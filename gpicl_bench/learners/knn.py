"""k-nearest neighbours by majority vote among the support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.learners import option_checks
from gpicl_bench.learners.base import EpisodeRows, RowLearner, combine_squared_distances


class KNearestNeighbours(RowLearner):
    """Majority vote of the ``k`` nearest support examples (Euclidean); ties go to the class of nearer neighbours.

    ``k`` is capped at the support size. Scores are vote counts plus a bonus below one half that decreases with
    neighbour rank, so they rank classes by votes first and by nearness second.
    """

    def __init__(self, *, k: int = 1) -> None:
        option_checks.knn(k=k)
        self.k = k

    def predict_rows(self, support: EpisodeRows, support_y: Tensor, query: EpisodeRows, way: int) -> Tensor:
        shots = support.index.shape[1]
        k = min(self.k, shots)
        cross = support.join(query).map(lambda rows, _: torch.bmm(rows[:, shots:], rows[:, :shots].transpose(1, 2)))
        distances = combine_squared_distances(query.squared_norms(), cross, support.squared_norms())
        nearest = torch.topk(distances, k, dim=-1, largest=False).indices  # [E, Q, k]
        votes = torch.gather(support_y[:, None, :].expand(-1, nearest.shape[1], -1), 2, nearest)
        rank_bonus = torch.arange(k, 0, -1, device=nearest.device, dtype=distances.dtype) / (k * (k + 1))
        weights = (1 + rank_bonus).expand_as(votes)
        return (F.one_hot(votes, way).to(distances.dtype) * weights[..., None]).sum(2)
