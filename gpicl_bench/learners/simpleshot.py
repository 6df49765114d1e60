"""SimpleShot: nearest class centroid after centring and L2 normalisation (CL2N)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.learners.base import EpisodeRows, RowLearner, class_means, squared_distances


class SimpleShot(RowLearner):
    """SimpleShot's CL2N nearest centroid (Wang et al., 2019) on the given features.

    Every feature, support and query alike, is centred by the mean of the episode's support — never the queries',
    so no query informs another — and scaled to unit length; a class's centroid is the mean of its transformed
    support features, and a query's logits are minus its squared Euclidean distances to them. (The paper centres by
    the mean of the base classes' features, which frozen-feature suites do not provide; the support mean is the
    episode's own estimate of it.)
    """

    def predict_rows(self, support: EpisodeRows, support_y: Tensor, query: EpisodeRows, way: int) -> Tensor:
        mean = support.class_means(support_y.new_zeros(support_y.shape), 1)  # [E, 1, D]
        centroids = support.map(lambda rows, part: class_means(cl2n(rows, mean[part]), support_y[part], way))
        return query.map(lambda rows, part: squared_distances(cl2n(rows, mean[part]), centroids[part]).neg_())


def cl2n(x: Tensor, mean: Tensor) -> Tensor:
    """Rows x [E, M, D] centred by their episode's mean [E, 1, D] and scaled to unit length."""
    return F.normalize(x - mean, dim=-1)
