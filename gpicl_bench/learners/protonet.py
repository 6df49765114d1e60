"""Prototypical classification: each class is the mean of its support features, queries go to the nearest mean."""

from __future__ import annotations

import torch
from torch import Tensor

from gpicl_bench.learners.base import EpisodeRows, RowLearner, combine_squared_distances


class ProtoNet(RowLearner):
    """Nearest class mean under squared Euclidean distance (Snell et al., 2017) on the given features.

    Read from the feature table, chunk by chunk of episodes: class means are sums by index, the queries' squared
    norms come from the table, and only the inner products with the means read the query rows.
    """

    def predict_rows(self, support: EpisodeRows, support_y: Tensor, query: EpisodeRows, way: int) -> Tensor:
        query_norms = query.squared_norms()

        def logits(rows: Tensor, part: slice) -> Tensor:
            prototypes = support.episodes(part).class_means(support_y[part], way)
            cross = torch.bmm(rows, prototypes.transpose(1, 2))
            return combine_squared_distances(query_norms[part], cross, prototypes.square().sum(-1)).neg_()

        return query.map(logits)
