"""Learners against per-episode references, the learner registry and the suites (every registered learner also meets
the contract of test_learner_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from threadpoolctl import threadpool_limits

from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners.knn import KNearestNeighbours
from gpicl_bench.learners.logreg import LogisticRegression
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.registry import Ref
from gpicl_bench.suites import open_suite


def random_episodes(n_episodes: int, way: int, shot: int, n_query: int, dim: int, seed: int):
    """Random Gaussian support/query sets with shuffled support labels, each class with `shot` examples."""
    generator = torch.Generator().manual_seed(seed)
    support_x = torch.randn(n_episodes, way * shot, dim, generator=generator)
    labels = torch.arange(way).repeat_interleave(shot)
    support_y = torch.stack([labels[torch.randperm(way * shot, generator=generator)] for _ in range(n_episodes)])
    support_x = support_x + 1.5 * torch.randn(n_episodes, way, dim, generator=generator).gather(
        1, support_y[..., None].expand(-1, -1, dim)
    )
    query_x = torch.randn(n_episodes, n_query, dim, generator=generator) * 1.8
    return support_x, support_y, query_x


def digits_episodes(shape: EpisodeShape, n_episodes: int, seed: int, split: str = "test"):
    data = open_suite("digits").suite.load(split)
    episodes = EpisodeSampler(data.labels, shape, seed=seed).sample(torch.arange(n_episodes))
    return (
        data.features[episodes.support_index],
        episodes.support_labels,
        data.features[episodes.query_index],
        episodes.query_labels,
    )


# --- protonet ----------------------------------------------------------------------------------------------------


def test_protonet_matches_reference():
    """ProtoNet logits are minus squared distances to per-class means; argmax equals a per-episode numpy reference."""
    way, shot = 5, 3
    support_x, support_y, query_x = random_episodes(40, way, shot, 17, 12, seed=0)
    logits = ProtoNet().predict(support_x, support_y, query_x, way)
    assert logits.shape == (40, 17, way)
    for e in range(40):
        sx, sy, qx = support_x[e].double().numpy(), support_y[e].numpy(), query_x[e].double().numpy()
        means = np.stack([sx[sy == c].mean(0) for c in range(way)])
        distances = ((qx[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        np.testing.assert_allclose(logits[e].double().numpy(), -distances, rtol=1e-4, atol=1e-3)
        assert (logits[e].argmax(-1).numpy() == distances.argmin(-1)).all()


def test_protonet_unequal_shots_uses_class_means():
    """Prototypes are means of each class's own support rows, even when classes have different numbers of shots."""
    support_x = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [10.0, 0.0]]])  # class 0 mean (1, 0), class 1 at (10, 0)
    support_y = torch.tensor([[0, 0, 1]])
    query_x = torch.tensor([[[1.0, 0.0], [5.4, 0.0], [5.6, 0.0]]])
    logits = ProtoNet().predict(support_x, support_y, query_x, 2)
    assert logits[0].argmax(-1).tolist() == [0, 0, 1]
    torch.testing.assert_close(logits[0, 0], torch.tensor([0.0, -81.0]))


# --- knn ---------------------------------------------------------------------------------------------------------


def test_knn_k1_matches_nearest_neighbour_reference():
    """k=1 predicts the label of the nearest support example, as a per-episode brute-force reference does."""
    way = 4
    support_x, support_y, query_x = random_episodes(40, way, 3, 19, 10, seed=1)
    logits = KNearestNeighbours(k=1).predict(support_x, support_y, query_x, way)
    assert logits.shape == (40, 19, way)
    for e in range(40):
        distances = torch.cdist(query_x[e].double(), support_x[e].double())
        expected = support_y[e][distances.argmin(-1)]
        assert torch.equal(logits[e].argmax(-1), expected)


def test_knn_majority_vote_beats_nearest_neighbour():
    """k=3 takes the majority of the 3 nearest even when the single nearest neighbour belongs to another class."""
    support_x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.2, 0.0], [9.0, 0.0], [9.5, 0.0]]])
    support_y = torch.tensor([[0, 1, 1, 2, 2]])
    query_x = torch.tensor([[[0.1, 0.0]]])  # nearest: class 0 (0.1); next two: class 1 (0.9, 1.1)
    assert KNearestNeighbours(k=1).predict(support_x, support_y, query_x, 3)[0, 0].argmax().item() == 0
    scores = KNearestNeighbours(k=3).predict(support_x, support_y, query_x, 3)[0, 0]
    assert scores.argmax().item() == 1
    assert scores[2].item() == 0  # class 2 is not among the 3 nearest


def test_knn_tie_goes_to_nearer_neighbour():
    """With a tied vote, the class whose neighbour is nearer wins."""
    support_x = torch.tensor([[[0.0], [3.0], [100.0]]])
    support_y = torch.tensor([[1, 0, 0]])
    query_x = torch.tensor([[[1.0], [2.0]]])
    predictions = KNearestNeighbours(k=2).predict(support_x, support_y, query_x, 2)[0].argmax(-1)
    assert predictions.tolist() == [1, 0]


def test_knn_k_capped_at_support_size():
    """k larger than the support set behaves as k = support size instead of failing."""
    way = 3
    support_x, support_y, query_x = random_episodes(10, way, 2, 8, 5, seed=2)
    capped = KNearestNeighbours(k=50).predict(support_x, support_y, query_x, way)
    exact = KNearestNeighbours(k=way * 2).predict(support_x, support_y, query_x, way)
    assert torch.equal(capped, exact)
    # With every support example voting, each class gets exactly `shot` votes; ranking bonuses stay below one.
    assert bool((capped.floor() == 2).all())


def test_knn_rejects_k_below_one():
    """k < 1 is a UserError."""
    with pytest.raises(UserError, match="k"):
        KNearestNeighbours(k=0)


# --- logistic regression -----------------------------------------------------------------------------------------


def sklearn_fit(x: np.ndarray, y: np.ndarray, c: float) -> SkLogisticRegression:
    return SkLogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x, y)


def regularised_loss(weights: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, c: float) -> float:
    """scikit-learn's objective: summed cross-entropy plus ||W||² / (2C), intercept unpenalised."""
    z = x @ weights + bias
    z = z - z.max(1, keepdims=True)
    cross_entropy = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    return float(cross_entropy.sum() + (weights**2).sum() / (2 * c))


@pytest.mark.parametrize(("shot", "c"), [(1, 1.0), (5, 1.0), (1, 0.1), (5, 0.1)])
def test_logreg_matches_sklearn(shot, c):
    """Per-episode fits agree with scikit-learn's LogisticRegression(C=c): predictions, coefficients, objective."""
    way, n_episodes = 5, 50
    support_x, support_y, query_x, _ = digits_episodes(EpisodeShape(way, shot, 10), n_episodes, seed=shot)
    learner = LogisticRegression(c=c)
    weights, bias = learner.fit(support_x, support_y, way)
    logits = learner.predict(support_x, support_y, query_x, way)
    assert logits.shape == (n_episodes, way * 10, way)

    # Everything to float64 numpy first, so that no torch work interleaves with the scikit-learn fits.
    sx, sy, qx = support_x.double().numpy(), support_y.numpy(), query_x.double().numpy()
    ours_w, ours_b = weights.double().numpy(), bias.double().numpy()
    predicted = logits.argmax(-1).numpy()
    agree = total = 0
    worst_coef = worst_gap = 0.0
    for e in range(n_episodes):
        # One BLAS/OpenMP thread: tiny fits otherwise thrash against torch's idle-spinning threads on small hosts.
        with threadpool_limits(limits=1):
            reference = sklearn_fit(sx[e], sy[e], c)
        assert reference.coef_.shape == (way, sx.shape[2])
        expected = reference.predict(qx[e])
        agree += int((predicted[e] == expected).sum())
        total += expected.size
        worst_coef = max(worst_coef, float(np.abs(ours_w[e].T - reference.coef_).max()))
        optimum = regularised_loss(reference.coef_.T, reference.intercept_, sx[e], sy[e], c)
        gap = regularised_loss(ours_w[e], ours_b[e], sx[e], sy[e], c) - optimum
        worst_gap = max(worst_gap, gap / optimum)
    assert agree / total >= 0.995, (agree, total)
    assert worst_coef < 0.05
    # The unpenalised intercept lies along a nearly flat direction of the objective, which 500 FISTA steps do not
    # fully resolve (differences up to ~0.5 with the objective within 1e-3 of the optimum): it is not compared.
    assert worst_gap < 1e-3


def test_logreg_option_validation():
    """Non-positive c or steps are a UserError."""
    with pytest.raises(UserError):
        LogisticRegression(c=0.0)
    with pytest.raises(UserError):
        LogisticRegression(steps=0)


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_builds_with_options():
    """Options in a reference are coerced to the annotated types and passed to the constructor."""
    knn = LEARNERS.build(Ref.parse("knn:k=3"))
    assert isinstance(knn, KNearestNeighbours)
    assert knn.k == 3
    logreg = LEARNERS.build(Ref.parse("logreg:c=0.5,steps=20"))
    assert isinstance(logreg, LogisticRegression)
    assert (logreg.c, logreg.steps) == (0.5, 20)
    assert isinstance(LEARNERS.build(Ref.parse("protonet")), ProtoNet)


def test_registry_unknown_learner_suggests_closest():
    """An unknown learner name is a UserError that suggests the closest known name."""
    with pytest.raises(UserError, match=r"unknown learner 'protonett'.*did you mean 'protonet'"):
        LEARNERS.build(Ref.parse("protonett"))
    with pytest.raises(UserError, match=r"did you mean 'knn'"):
        LEARNERS.build(Ref.parse("knnn:k=3"))


def test_registry_rejects_unknown_option_and_bad_values():
    """An unknown option, or a value of the wrong type, is a UserError naming the option."""
    with pytest.raises(UserError, match=r"no option 'j'"):
        LEARNERS.build(Ref.parse("knn:j=3"))
    for bad in ("three", "1.5", ""):
        with pytest.raises(UserError, match=r"option 'k'.*expected a whole number"):
            LEARNERS.build(Ref.parse(f"knn:k={bad}"))
    with pytest.raises(UserError, match=r"option 'c'.*expected a finite number"):
        LEARNERS.build(Ref.parse("logreg:c=big"))


def test_registry_canonical_drops_defaults():
    """The canonical reference drops default-valued options and sorts the rest: one spelling per component."""
    assert str(LEARNERS.canonical(Ref.parse("knn:k=1"))) == "knn"
    assert str(LEARNERS.canonical(Ref.parse("knn:k=03"))) == "knn:k=3"
    assert str(LEARNERS.canonical(Ref.parse("logreg:steps=500,c=1"))) == "logreg"
    assert str(LEARNERS.canonical(Ref.parse("logreg:steps=100,c=0.10"))) == "logreg:c=0.1,steps=100"


# --- suites ------------------------------------------------------------------------------------------------------


def test_open_suite_labels():
    """Suite labels are canonical: plain digits is 'digits', projected digits is 'digits:project'."""
    plain = open_suite("digits")
    assert plain.label == "digits"
    assert plain.project is False
    projected = open_suite("digits:project")
    assert projected.label == "digits:project"
    assert projected.project is True
    assert open_suite("digits:project=false").label == "digits"
    with pytest.raises(UserError, match=r"unknown suite"):
        open_suite("digitz")


def test_digits_splits_partition_the_images():
    """train/val/test hold every one of the 1,797 images exactly once, with its label, z-normalised by train pixels."""
    suite = open_suite("digits").suite
    splits = {name: suite.load(name) for name in suite.splits}
    assert set(splits) == {"train", "val", "test"}
    assert sum(s.labels.numel() for s in splits.values()) == 1797
    for data in splits.values():
        assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
        assert data.dim == 64 and data.class_names == tuple(str(d) for d in range(10))

    train = splits["train"].features.double()
    assert abs(train.mean().item()) < 1e-4
    assert abs(train.std().item() - 1) < 1e-3

    # Undo the (shared) affine normalisation: the 17 pixel levels 0..16 map to 17 equally spaced values.
    features = torch.cat([s.features for s in splits.values()]).double()
    levels = torch.unique(features)
    assert levels.numel() == 17
    scale = (levels[-1] - levels[0]) / 16
    pixels = torch.round((features - levels[0]) / scale).to(torch.int64)
    torch.testing.assert_close(levels[0] + pixels * scale, features)
    labels = torch.cat([s.labels for s in splits.values()])

    # As a multiset of (pixels, label) rows, the union of the splits is exactly the digits data set.
    ours = np.concatenate([pixels.numpy(), labels.numpy()[:, None]], 1)
    digits = load_digits()
    theirs = np.concatenate([digits.data.astype(np.int64), digits.target[:, None]], 1)
    ours_sorted = ours[np.lexsort(ours.T[::-1])]
    theirs_sorted = theirs[np.lexsort(theirs.T[::-1])]
    assert np.array_equal(ours_sorted, theirs_sorted)

    # Split fractions per class: about 50/20/30.
    sizes = {name: s.labels.numel() for name, s in splits.items()}
    assert abs(sizes["train"] / 1797 - 0.5) < 0.01
    assert abs(sizes["val"] / 1797 - 0.2) < 0.01
    assert abs(sizes["test"] / 1797 - 0.3) < 0.01


def test_digits_splits_are_stable_across_loads():
    """Loading a split twice gives identical data (the split is a fixed function, not a fresh shuffle)."""
    first = open_suite("digits").suite.load("val")
    second = open_suite("digits").suite.load("val")
    assert torch.equal(first.features, second.features)
    assert torch.equal(first.labels, second.labels)


def test_digits_unknown_split():
    """An unknown split is a UserError naming the split."""
    with pytest.raises(UserError, match=r"no split 'dev'"):
        open_suite("digits").suite.load("dev")
