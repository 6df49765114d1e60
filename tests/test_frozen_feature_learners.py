"""The CAML table's classic heads and SimpleShot against independent references, and the metric learners' reading
of rows from the feature table: the same logits as from gathered rows, bit for bit, in the engine too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import RidgeClassifier
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.learners import base
from gpicl_bench.learners.base import EpisodeRows, FeatureTable, Learner, RowLearner, class_means
from gpicl_bench.learners.metaopt import MetaOpt
from gpicl_bench.learners.metaqda import MetaQDA
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.ridge import Ridge
from gpicl_bench.learners.simpleshot import SimpleShot
from gpicl_bench.registry import Ref
from gpicl_bench.suites import SplitData, open_suite

REFERENCE_EPISODES = 200


def digits_episodes(shape: EpisodeShape, n_episodes: int, seed: int):
    data = open_suite("digits").suite.load("test")
    episodes = EpisodeSampler(data.labels, shape, seed=seed).sample(torch.arange(n_episodes))
    return data.features[episodes.support_index], episodes.support_labels, data.features[episodes.query_index]


def agreement(predicted: np.ndarray, reference_fit, sx: np.ndarray, sy: np.ndarray, qx: np.ndarray) -> float:
    """Share of queries on which ``predicted`` [E, Q] agrees with a scikit-learn estimator fitted per episode."""
    agree = 0
    for e in range(len(sx)):
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            agree += int((reference_fit().fit(sx[e], sy[e]).predict(qx[e]) == predicted[e]).sum())
    return agree / predicted.size


def as_numpy(*tensors: torch.Tensor) -> list[np.ndarray]:
    return [t.double().numpy() if t.is_floating_point() else t.numpy() for t in tensors]


# --- metaopt -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shot", "c", "intercept"), [(1, 0.1, False), (5, 0.1, False), (5, 1.0, True)])
def test_metaopt_matches_liblinear_crammer_singer(shot, c, intercept):
    """Predictions agree with LinearSVC(multi_class="crammer_singer") on ≥ 99% of the queries of 200 digits episodes
    (MetaOptNet's options, and LinearSVC's own defaults), and so do the weights."""
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, shot, 15), REFERENCE_EPISODES, seed=shot)
    learner = MetaOpt(c=c, intercept=intercept)
    predicted = learner.predict(support_x, support_y, query_x, 5).argmax(-1).numpy()
    weights = learner.fit(support_x, support_y, 5).numpy()
    sx, sy, qx = as_numpy(support_x, support_y, query_x)

    def reference():
        return LinearSVC(multi_class="crammer_singer", C=c, fit_intercept=intercept, tol=1e-7, max_iter=100_000)

    assert agreement(predicted, reference, sx, sy, qx) >= 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for e in range(0, REFERENCE_EPISODES, 40):
            fitted = reference().fit(sx[e], sy[e])
            coef = np.concatenate([fitted.coef_, fitted.intercept_[:, None]], 1) if intercept else fitted.coef_
            np.testing.assert_allclose(weights[e].T, coef, atol=1e-3)


def test_metaopt_separable_support_is_classified_with_margin():
    """On a linearly separable support with a large c, the SVM classifies every support example correctly."""
    support_x, support_y, _ = digits_episodes(EpisodeShape(4, 3, 1), 20, seed=3)
    logits = MetaOpt(c=100.0).predict(support_x, support_y, support_x, 4)
    assert bool((logits.argmax(-1) == support_y).all())


def test_metaopt_rejects_bad_options():
    for options in ({"c": 0.0}, {"c": -1.0}, {"steps": 0}):
        with pytest.raises(UserError, match="metaopt"):
            MetaOpt(**options)


# --- ridge -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shot", "alpha", "intercept"), [(1, 50.0, False), (5, 1.0, True), (20, 50.0, True)])
def test_ridge_matches_ridge_classifier(shot, alpha, intercept):
    """Predictions agree with RidgeClassifier(alpha, fit_intercept) on ≥ 99% of the queries of 200 digits episodes;
    20 shots (100 support rows over 64 features) take the primal form. With an intercept, scikit-learn's ±1 targets
    give exactly twice these weights."""
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, shot, 10), REFERENCE_EPISODES, seed=shot)
    learner = Ridge(alpha=alpha, intercept=intercept)
    predicted = learner.predict(support_x, support_y, query_x, 5).argmax(-1).numpy()
    sx, sy, qx = as_numpy(support_x, support_y, query_x)
    assert agreement(predicted, lambda: RidgeClassifier(alpha=alpha, fit_intercept=intercept), sx, sy, qx) >= 0.99
    if intercept:
        weights, _ = learner.fit(support_x, support_y, 5)
        for e in range(0, REFERENCE_EPISODES, 40):
            coef = RidgeClassifier(alpha=alpha).fit(sx[e], sy[e]).coef_
            np.testing.assert_allclose(2 * weights[e].numpy().T, coef, rtol=1e-6, atol=1e-8)


def test_ridge_rejects_non_positive_alpha():
    with pytest.raises(UserError, match="alpha"):
        Ridge(alpha=0.0)


# --- metaqda -----------------------------------------------------------------------------------------------------


def metaqda_reference(sx, sy, qx, way, kappa, dof, scale, map_):
    """The posterior predictive (or MAP Gaussian) log densities [Q, way] of one episode, with every D×D matrix
    written out and scipy's densities."""
    dim = sx.shape[1]
    prior_mean = sx.mean(0)
    psi = scale * ((sx - prior_mean) ** 2).sum() / sx.size
    out = np.empty((len(qx), way))
    for c in range(way):
        rows = sx[sy == c]
        n, mean = len(rows), rows.mean(0)
        kappa_n, nu_n = kappa + n, dim - 1 + dof + n
        centre = (kappa * prior_mean + n * mean) / kappa_n
        gap = mean - prior_mean
        psi_n = psi * np.eye(dim) + (rows - mean).T @ (rows - mean) + kappa * n / kappa_n * np.outer(gap, gap)
        if map_:
            out[:, c] = stats.multivariate_normal(centre, psi_n / (nu_n + dim + 2)).logpdf(qx)
        else:
            df = nu_n - dim + 1
            out[:, c] = stats.multivariate_t(centre, psi_n * (kappa_n + 1) / (kappa_n * df), df=df).logpdf(qx)
    return out


@pytest.mark.parametrize(
    ("kappa", "dof", "scale", "map_"), [(0.1, 1.0, 10.0, False), (2.0, 5.0, 0.5, False), (0.1, 1.0, 10.0, True)]
)
def test_metaqda_matches_dense_reference(kappa, dof, scale, map_):
    """Log densities equal the dense-matrix reference on digits episodes (64 features > 26 support rows, so the
    Woodbury path is what is tested) and on a support with unequal shots and a large offset."""
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, 5, 4), 12, seed=1)
    generator = torch.Generator().manual_seed(0)
    skewed_x = torch.randn(3, 9, 6, generator=generator) * 3 + 100
    skewed_y = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2, 2]]).repeat(3, 1)
    skewed_q = torch.randn(3, 7, 6, generator=generator) * 3 + 100
    learner = MetaQDA(kappa=kappa, dof=dof, scale=scale, map=map_)
    for sx, sy, qx, way in ((support_x, support_y, query_x, 5), (skewed_x, skewed_y, skewed_q, 3)):
        ours = learner.log_densities(sx, sy, qx, way).numpy()
        for e in range(sx.shape[0]):
            expected = metaqda_reference(*as_numpy(sx[e], sy[e], qx[e]), way, kappa, dof, scale, map_)
            np.testing.assert_allclose(ours[e], expected, rtol=1e-9, atol=1e-8)


def test_metaqda_rejects_bad_options():
    for options in ({"kappa": 0.0}, {"dof": -1.0}, {"scale": 0.0}):
        with pytest.raises(UserError, match="metaqda"):
            MetaQDA(**options)


# --- simpleshot --------------------------------------------------------------------------------------------------


def cl2n_reference(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return (x - mean) / np.linalg.norm(x - mean, axis=-1, keepdims=True)


def test_simpleshot_matches_numpy_reference():
    """CL2N nearest centroid, written out per episode: centre by the support mean, unit length, class means of the
    transformed support, minus squared distances."""
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, 3, 6), 60, seed=2)
    logits = SimpleShot().predict(support_x, support_y, query_x, 5).double().numpy()
    for e in range(60):
        sx, sy, qx = as_numpy(support_x[e], support_y[e], query_x[e])
        support_unit, query_unit = cl2n_reference(sx, sx.mean(0)), cl2n_reference(qx, sx.mean(0))
        centroids = np.stack([support_unit[sy == c].mean(0) for c in range(5)])
        expected = -((query_unit[:, None, :] - centroids[None]) ** 2).sum(-1)
        np.testing.assert_allclose(logits[e], expected, rtol=1e-5, atol=1e-5)
        assert (logits[e].argmax(-1) == expected.argmax(-1)).all()


def test_simpleshot_queries_do_not_inform_each_other():
    """Changing one query (even wildly) leaves every other query's logits exactly as they were."""
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, 1, 4), 8, seed=4)
    before = SimpleShot().predict(support_x, support_y, query_x, 5)
    changed = query_x.clone()
    changed[:, 0] = changed[:, 0] * 50 + 7
    after = SimpleShot().predict(support_x, support_y, changed, 5)
    assert torch.equal(before[:, 1:], after[:, 1:])
    assert not torch.equal(before[:, 0], after[:, 0])


# --- the new learners in a batch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["metaopt:steps=100", "ridge", "metaqda", "metaqda:map", "simpleshot"])
def test_new_learners_do_not_depend_on_the_batch(name):
    """Episode i's logits are the same predicted among 40 episodes or among 5."""
    learner = LEARNERS.build(Ref.parse(name))
    support_x, support_y, query_x = digits_episodes(EpisodeShape(5, 2, 6), 40, seed=9)
    full = learner.predict(support_x, support_y, query_x, 5)
    assert full.shape == (40, 30, 5) and full.dtype == torch.float32
    subset = torch.tensor([33, 2, 39, 17, 0])
    part = learner.predict(support_x[subset], support_y[subset], query_x[subset], 5)
    torch.testing.assert_close(part, full[subset], rtol=1e-6, atol=1e-6)


# --- rows from the feature table ---------------------------------------------------------------------------------


def test_class_sums_add_each_class_rows_in_episode_order():
    """Sums by index equal adding each class's rows one by one in their order in the episode, at widths where a
    one-hot matrix product sums in another order; a class without rows sums to zero (its mean is NaN)."""
    generator = torch.Generator().manual_seed(0)
    for dim in (5, 7, 64):
        x = torch.randn(30, 12, dim, generator=generator)
        labels = torch.randint(0, 4, (30, 12), generator=generator)
        labels[:, -1] = 3
        labels[0] = torch.where(labels[0] == 2, 0, labels[0])  # episode 0 has no class 2
        expected = torch.zeros(30, 4, dim)
        for e in range(30):
            for m in range(12):
                expected[e, labels[e, m]] = expected[e, labels[e, m]] + x[e, m]
        assert torch.equal(EpisodeRows.of(x).class_sums(labels, 4), expected)
        means = class_means(x, labels, 4)
        assert torch.isnan(means[0, 2]).all() and not torch.isnan(means[1:, 3]).any()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 8 episodes whatever the width, so that every batch below is read in several chunks."""
    monkeypatch.setattr(base, "CHUNK_BYTES", 1)


@pytest.mark.parametrize("dim", [7, 64, 300])
@pytest.mark.parametrize("name", ["protonet", "knn", "knn:k=3", "simpleshot"])
def test_rows_from_the_table_give_the_logits_of_gathered_rows(small_chunks, name, dim):
    """predict_rows on the table and row numbers gives exactly predict's logits on the gathered rows."""
    learner = LEARNERS.build(Ref.parse(name))
    assert isinstance(learner, RowLearner)
    generator = torch.Generator().manual_seed(dim)
    labels = torch.arange(12).repeat_interleave(30)
    features = torch.randn(360, dim, generator=generator) + 2 * torch.randn(12, dim, generator=generator)[labels]
    batch = EpisodeSampler(labels, EpisodeShape(5, 3, 7), seed=0).sample(torch.arange(37))
    gathered = learner.predict(features[batch.support_index], batch.support_labels, features[batch.query_index], 5)
    table = FeatureTable(features)
    support, query = EpisodeRows(table, batch.support_index), EpisodeRows(table, batch.query_index)
    assert torch.equal(learner.predict_rows(support, batch.support_labels, query, 5), gathered)


class Gathered(Learner):
    """A learner as the engine sees it when it cannot read rows by index: predict on gathered rows only."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def predict(self, support_x, support_y, query_x, way):
        return self.learner.predict(support_x, support_y, query_x, way)


@pytest.mark.parametrize("name", ["protonet", "knn:k=3", "simpleshot"])
def test_engine_reads_rows_from_the_table_with_the_same_results(name):
    """The engine hands a RowLearner the table on an unprojected suite; its per-episode results are those of the
    gathered path, whatever the batch size."""
    data = open_suite("digits").suite.load("test")
    data = SplitData(data.features, data.labels, data.class_names)
    sampler = EpisodeSampler(data.labels, EpisodeShape(5, 1, 15), seed=0)
    learner = LEARNERS.build(Ref.parse(name))
    gathered = evaluate_group(Gathered(learner), data, sampler, range(3000), 1000, False).correct
    for batch_size in (3000, 77):
        assert np.array_equal(evaluate_group(learner, data, sampler, range(3000), batch_size, False).correct, gathered)
