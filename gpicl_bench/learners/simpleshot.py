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
    episode's own estimate of it.) An episode's support and queries are read together, chunk by chunk.
    """

    def predict_rows(self, support: EpisodeRows, support_y: Tensor, query: EpisodeRows, way: int) -> Tensor:
        shots = support.index.shape[1]

        def logits(rows: Tensor, part: slice) -> Tensor:
            support_x, query_x = rows[:, :shots], rows[:, shots:]
            mean = support_x.mean(1, keepdim=True)
            centroids = class_means(cl2n(support_x, mean), support_y[part], way)
            return squared_distances(cl2n(query_x, mean), centroids).neg_()

        return support.join(query).map(logits)


def cl2n(x: Tensor, mean: Tensor) -> Tensor:
    """Rows x [E, M, D] centred by their episode's mean [E, 1, D] and scaled to unit length."""
    return F.normalize(x - mean, dim=-1)
