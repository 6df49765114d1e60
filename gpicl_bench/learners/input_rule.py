"""The input rule of sequence learners: how an episode's raw features become the model's inputs.

A rule is computed per episode (or meta-training sequence) from its *context* — the support set, the examples
before the queries — and applied alike to the context and to the queries, so no query ever informs another. Every
evaluation path (episodes, the sequence view behind in-context learning curves) and meta-training use the rule a
model's config names, so the model reads at test time exactly what it was trained on.

Parts, each an invariance that the classic learners (protonet, 1-NN, L2-regularised logistic regression) have for
free:
- ``centre``: subtract the context's mean — invariant to a shift shared by the episode (a brightness offset, a
  dataset's mean image);
- ``basis``: express inputs in the context's principal axes (right singular vectors of the context, signs fixed so
  each axis has a positive third moment over the context), keeping the first ``input_dim`` — invariant to rotations,
  so inputs of any dimension arrive in one canonical form. Distances between a query and any point of the context's
  span are unchanged by dropping the part of the query outside that span (it is the same for every class), so
  nothing a metric learner uses is lost;
- ``scale``: divide by the context's root-mean-square norm (times √input_dim) — invariant to a global scale.

Without ``basis``, inputs of dimension D ≠ ``input_dim`` go through one fixed Gaussian map D → ``input_dim``
(entries N(0, 1/D), seeded by D alone). The rule ``standardise`` is the one older checkpoints were trained with:
each vector standardised over its own features, mapped, and standardised again.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from gpicl_bench.episodes import STREAM_INPUT_MAP, random_projections
from gpicl_bench.learners.input_rule_grammar import LEGACY, parse

FIXED_SEED = 0  # seeds the fixed input-size map
_EPS = 1e-6
_RANK_TOLERANCE = 1e-5  # singular values below this share of the largest span nothing
_CUDA_BATCHED_EIGH_LIMIT = 32  # the largest matrices CUDA's eigh solves as one batch


def apply(rule: str, x: Tensor, context: int, input_dim: int) -> Tensor:
    """Model inputs [B, T, input_dim] for raw inputs ``x`` [B, T, D] whose first ``context`` rows are the context."""
    parts = parse(rule)
    if parts == {LEGACY}:
        x = standardise_each(x)
        return x if x.shape[-1] == input_dim else standardise_each(_fixed_map(x, input_dim))
    dtype, x = x.dtype, x.double()  # float64, so that a centred context's null space is null to within 1e-15
    if "centre" in parts:
        x = x - x[:, :context].mean(1, keepdim=True)
    x = _principal_coordinates(x, context, input_dim) if "basis" in parts else _fixed_map(x, input_dim)
    if "scale" in parts:
        rms = x[:, :context].square().sum(-1).mean(-1).sqrt()[:, None, None]
        x = x * (math.sqrt(input_dim) / rms.clamp_min(_EPS))
    return x.to(dtype)


def _principal_coordinates(x: Tensor, context: int, input_dim: int) -> Tensor:
    """Coordinates of every row on the context's principal axes, first ``input_dim`` of them (zero-padded).

    The axes come from the eigenvectors of the smaller of the context's Gram (S×S) and scatter (D×D) matrices, in
    float64 — several times faster than a batched SVD for the few dozen examples of an episode."""
    support = x[:, :context]
    gram = context <= x.shape[-1]  # C = U Σ Vᵀ: the Gram matrix C Cᵀ = U Σ² Uᵀ, the scatter matrix Cᵀ C = V Σ² Vᵀ
    variances, vectors = _eigh(support @ support.mT if gram else support.mT @ support)  # ascending
    variances, vectors = variances.flip(-1)[:, :input_dim], vectors.flip(-1)[..., :input_dim]  # the kept axes only
    values = variances.clamp_min(0).sqrt()
    spanned = values > _RANK_TOLERANCE * values[:, :1]  # axes of a null space are arbitrary: dropped
    # with the Gram matrix, x V = x Cᵀ U Σ⁻¹
    coordinates = (x @ support.mT @ vectors) / torch.where(spanned, values, 1.0)[:, None, :] if gram else x @ vectors
    coordinates = coordinates * spanned[:, None, :]
    skew = coordinates[:, :context].pow(3).sum(1, keepdim=True)
    coordinates = coordinates * torch.where(skew < 0, -1.0, 1.0)
    missing = input_dim - coordinates.shape[-1]
    return torch.nn.functional.pad(coordinates, (0, missing)) if missing else coordinates


def _eigh(matrices: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, on the CPU for CUDA matrices above 32×32: CUDA solves a batch of those one matrix at a
    time (512 Gram matrices of 60×60, one meta-training batch: 391 ms on an H200, most of a training step), and
    LAPACK on the host's cores does the same batch, copies included, in 153 ms (16 cores)."""
    if matrices.is_cuda and matrices.shape[-1] > _CUDA_BATCHED_EIGH_LIMIT:
        values, vectors = torch.linalg.eigh(matrices.cpu())
        return values.to(matrices.device), vectors.to(matrices.device)
    return torch.linalg.eigh(matrices)


@functools.cache
def _input_map(in_dim: int, out_dim: int, device: str) -> Tensor:
    ids = torch.tensor([in_dim], device=device)
    return random_projections(FIXED_SEED, ids, in_dim, out_dim, stream=STREAM_INPUT_MAP)[0]


def _fixed_map(x: Tensor, input_dim: int) -> Tensor:
    if x.shape[-1] == input_dim:
        return x
    return x @ _input_map(x.shape[-1], input_dim, str(x.device)).to(x.dtype).T


def standardise_each(x: Tensor) -> Tensor:
    """Each vector to zero mean and unit variance over its own features."""
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(_EPS)
