"""Prototypical classification: each class is the mean of its support features, queries go to the nearest mean."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.learners.base import Learner, squared_distances


class ProtoNet(Learner):
    """Nearest class mean under squared Euclidean distance (Snell et al., 2017) on the given features."""

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        one_hot = F.one_hot(support_y, way).to(support_x.dtype)  # [E, S, way]
        prototypes = one_hot.transpose(1, 2) @ support_x / one_hot.sum(1)[:, :, None]
        return -squared_distances(query_x, prototypes)
