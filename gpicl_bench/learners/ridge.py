"""R2D2's head: ridge regression onto one-hot targets, in closed form for every episode at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpicl_bench.learners import option_checks
from gpicl_bench.learners.base import Learner


class Ridge(Learner):
    """Closed-form ridge regression onto the one-hot labels (Bertinetto et al., 2019, "R2D2"), the objective of
    scikit-learn's ``RidgeClassifier(alpha=alpha, fit_intercept=intercept)``:

        minimise over W, b   ‖Y − X W − 1 bᵀ‖² + alpha ‖W‖²     (b = 0 without ``intercept``; b is not penalised)

    With an intercept, X and Y are centred by their support means and b = ȳ − x̄ W. W is solved in the Woodbury
    (dual) form W = Xᵀ (X Xᵀ + alpha I)⁻¹ Y when the support is smaller than the dimension — R2D2's form, one S×S
    system per episode — and in the primal form (Xᵀ X + alpha I)⁻¹ Xᵀ Y otherwise, by Cholesky in float64.
    scikit-learn's targets are ±1 where these are 0/1; that changes every class's scores by the same affine map,
    so the predictions are the same. The defaults are R2D2's head as MetaOptNet implements it: alpha = 50, no
    intercept (R2D2 also meta-learns alpha and an output scale and offset, which do not change predictions).
    """

    def __init__(self, *, alpha: float = 50.0, intercept: bool = False) -> None:
        option_checks.ridge(alpha=alpha)
        self.alpha = alpha
        self.intercept = intercept

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        """Inputs plus float64 copies of them and of the normal equations (S×S or D×D)."""
        side = min(support, dim)
        return super().bytes_per_episode(way, support, query, dim) + 8 * (2 * (support + query) * dim + 3 * side**2)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        weights, bias = self.fit(support_x, support_y, way)
        return (torch.bmm(query_x.double(), weights) + bias[:, None, :]).to(query_x.dtype)

    def fit(self, x: Tensor, y: Tensor, way: int) -> tuple[Tensor, Tensor]:
        """Weights [E, D, way] and biases [E, way], float64."""
        x = x.double()
        targets = F.one_hot(y, way).double()
        if self.intercept:
            x_mean, y_mean = x.mean(1, keepdim=True), targets.mean(1, keepdim=True)
            x, targets = x - x_mean, targets - y_mean
        support, dim = x.shape[1], x.shape[2]
        if support < dim:
            gram = torch.bmm(x, x.transpose(1, 2))
            weights = torch.bmm(x.transpose(1, 2), _solve_regularised(gram, targets, self.alpha))
        else:
            gram = torch.bmm(x.transpose(1, 2), x)
            weights = _solve_regularised(gram, torch.bmm(x.transpose(1, 2), targets), self.alpha)
        if self.intercept:
            bias = (y_mean - torch.bmm(x_mean, weights))[:, 0]
        else:
            bias = weights.new_zeros(weights.shape[0], way)
        return weights, bias


def _solve_regularised(gram: Tensor, rhs: Tensor, alpha: float) -> Tensor:
    """(gram + alpha I)⁻¹ rhs for symmetric positive semi-definite ``gram`` [E, n, n], by Cholesky."""
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(gram + alpha * eye))
