"""k-nearest neighbours by majority vote among the support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.errors import UserError
from gpicl_bench.learners.base import Learner, squared_distances


class KNearestNeighbours(Learner):
    """Majority vote of the ``k`` nearest support examples (Euclidean); ties go to the class of nearer neighbours.

    ``k`` is capped at the support size. Scores are vote counts plus a bonus below one half that decreases with
    neighbour rank, so they rank classes by votes first and by nearness second.
    """

    def __init__(self, *, k: int = 1) -> None:
        if k < 1:
            raise UserError(f"knn needs k ≥ 1, got {k}")
        self.k = k

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        k = min(self.k, support_x.shape[1])
        nearest = torch.topk(squared_distances(query_x, support_x), k, dim=-1, largest=False).indices  # [E, Q, k]
        votes = torch.gather(support_y[:, None, :].expand(-1, query_x.shape[1], -1), 2, nearest)
        rank_bonus = torch.arange(k, 0, -1, device=query_x.device, dtype=query_x.dtype) / (k * (k + 1))
        weights = (1 + rank_bonus).expand_as(votes)
        return (F.one_hot(votes, way).to(query_x.dtype) * weights[..., None]).sum(2)
