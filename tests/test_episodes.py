"""Invariants of the seeded episode sampler (gpicl_bench.episodes)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from gpicl_bench.episodes import (
    Episodes,
    EpisodeSampler,
    EpisodeShape,
    floyd_sample,
    hash32,
    random_projections,
    stream_key,
)
from gpicl_bench.errors import UserError
from gpicl_bench.suites import open_suite

# A p-value below this fails a uniformity check. The sampler is deterministic, so each check either always passes
# or always fails; a correct sampler fails one only with this probability over the choice of seed.
P_MIN = 1e-4


@pytest.fixture(scope="module")
def digits_labels() -> torch.Tensor:
    return open_suite("digits").suite.load("train").labels


def synthetic_labels() -> torch.Tensor:
    """Non-contiguous label values (including a negative and a huge one), unequal class sizes, shuffled rows."""
    values = [3, 7, 42, -5, 1_000_003, 11]
    sizes = [12, 30, 9, 17, 25, 10]
    labels = torch.cat([torch.full((n,), v, dtype=torch.int64) for v, n in zip(values, sizes, strict=True)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]


def episode_fields(episodes: Episodes) -> tuple[torch.Tensor, ...]:
    return (
        episodes.ids,
        episodes.support_index,
        episodes.support_labels,
        episodes.query_index,
        episodes.query_labels,
    )


def assert_same_episodes(a: Episodes, b: Episodes) -> None:
    for x, y in zip(episode_fields(a), episode_fields(b), strict=True):
        assert x.dtype == y.dtype
        assert torch.equal(x, y)


def concat(batches: list[Episodes]) -> Episodes:
    return Episodes(*(torch.cat(parts) for parts in zip(*(episode_fields(b) for b in batches), strict=True)))


def take(episodes: Episodes, positions: torch.Tensor) -> Episodes:
    return Episodes(*(field[positions] for field in episode_fields(episodes)))


def check_valid(episodes: Episodes, labels: torch.Tensor, shape: EpisodeShape) -> None:
    """Assert every structural invariant of a batch of episodes drawn from a split with the given true labels."""
    way, shot, query = shape.way, shape.shot, shape.query
    n = episodes.ids.numel()
    assert episodes.support_index.shape == (n, way * shot)
    assert episodes.support_labels.shape == (n, way * shot)
    assert episodes.query_index.shape == (n, way * query)
    assert episodes.query_labels.shape == (n, way * query)
    for field in episode_fields(episodes):
        assert field.dtype == torch.int64
    for index in (episodes.support_index, episodes.query_index):
        assert int(index.min()) >= 0 and int(index.max()) < labels.numel()
    for episode_labels in (episodes.support_labels, episodes.query_labels):
        assert int(episode_labels.min()) >= 0 and int(episode_labels.max()) < way

    # Exactly `shot` support and `query` query rows per episode label.
    support_counts = torch.nn.functional.one_hot(episodes.support_labels, way).sum(1)
    query_counts = torch.nn.functional.one_hot(episodes.query_labels, way).sum(1)
    assert bool((support_counts == shot).all())
    assert bool((query_counts == query).all())

    # Episode label n maps to one true class throughout the episode (support and query alike) ...
    true_support = labels[episodes.support_index]
    true_query = labels[episodes.query_index]
    class_of_label = torch.full((n, way), torch.iinfo(torch.int64).min, dtype=torch.int64)
    class_of_label.scatter_(1, episodes.support_labels, true_support)
    assert torch.equal(class_of_label.gather(1, episodes.support_labels), true_support)
    assert torch.equal(class_of_label.gather(1, episodes.query_labels), true_query)
    # ... and distinct labels map to distinct classes.
    sorted_classes = class_of_label.sort(1).values
    assert bool((sorted_classes[:, 1:] != sorted_classes[:, :-1]).all())

    # No dataset row twice in an episode (so support and query are disjoint).
    rows = torch.cat([episodes.support_index, episodes.query_index], 1).sort(1).values
    assert bool((rows[:, 1:] != rows[:, :-1]).all())


def chi_square_uniform(counts: np.ndarray) -> float:
    """p-value of a chi-square goodness-of-fit test of counts against the uniform distribution."""
    return float(stats.chisquare(np.asarray(counts, dtype=np.float64).ravel()).pvalue)


# --- determinism -------------------------------------------------------------------------------------------------


def test_episode_is_pure_function_of_id_regardless_of_batching(digits_labels):
    """Episode i depends only on (seed, labels, shape, i): not on batch size, batch membership or id order."""
    shape = EpisodeShape(5, 3, 4)
    sampler = EpisodeSampler(digits_labels, shape, seed=123)
    ids = torch.arange(1000)
    whole = sampler.sample(ids)

    for size in (37, 1000):
        batches = [sampler.sample(ids[start : start + size]) for start in range(0, 1000, size)]
        assert_same_episodes(concat(batches), whole)
    # One at a time (on a prefix, to keep the test fast).
    singles = [sampler.sample(ids[i : i + 1]) for i in range(150)]
    assert_same_episodes(concat(singles), take(whole, ids[:150]))

    # A shuffled, out-of-order subset (with a repeated id) gives the same rows for the same ids.
    generator = torch.Generator().manual_seed(1)
    picked = torch.randperm(1000, generator=generator)[:150]
    picked = torch.cat([picked, picked[:3]])
    assert_same_episodes(sampler.sample(picked), take(whole, picked))

    # Ids far outside the first batch are not affected by what else is sampled with them.
    far = torch.tensor([10**9, 5, 2**31 + 7])
    mixed = sampler.sample(far)
    assert_same_episodes(take(mixed, torch.tensor([1])), take(whole, torch.tensor([5])))
    assert_same_episodes(take(mixed, torch.tensor([0, 2])), sampler.sample(far[[0, 2]]))


def test_fresh_samplers_agree_and_seeds_differ(digits_labels):
    """Two samplers built alike give identical episodes; different seeds (also beyond 32 bits) give different ones."""
    shape = EpisodeShape(5, 1, 5)
    ids = torch.arange(300)
    first = EpisodeSampler(digits_labels, shape, seed=7).sample(ids)
    second = EpisodeSampler(digits_labels.clone(), shape, seed=7).sample(ids)
    assert_same_episodes(first, second)

    for other_seed in (8, 7 + 2**32, 7 + 2**64, -7):
        other = EpisodeSampler(digits_labels, shape, seed=other_seed).sample(ids)
        same = (other.support_index == first.support_index).all(1) & (other.query_index == first.query_index).all(1)
        assert int(same.sum()) == 0, f"seed {other_seed} repeats episodes of seed 7"

    # Different episode ids of one seed are different episodes too.
    rows = torch.cat([first.support_index, first.query_index], 1)
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]


# --- structure ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("way", "shot", "query"),
    [(2, 1, 1), (5, 1, 15), (5, 5, 10), (10, 3, 7), (10, 1, 1), (3, 40, 45)],
)
def test_episode_structure_on_digits(digits_labels, way, shot, query):
    """Distinct classes, no repeated row, disjoint support/query, consistent labels, exact counts per class."""
    shape = EpisodeShape(way, shot, query)
    episodes = EpisodeSampler(digits_labels, shape, seed=2024).sample(torch.arange(500))
    check_valid(episodes, digits_labels, shape)


def test_structure_with_noncontiguous_labels_and_unequal_class_sizes():
    """Label values need not be 0..C-1 and classes may differ in size; every class stays reachable."""
    labels = synthetic_labels()
    smallest = 9
    shape = EpisodeShape(4, 3, smallest - 3)  # uses every image of the smallest class
    sampler = EpisodeSampler(labels, shape, seed=5)
    episodes = sampler.sample(torch.arange(3000))
    check_valid(episodes, labels, shape)

    seen_classes = set(labels[episodes.support_index].unique().tolist())
    assert seen_classes == set(labels.unique().tolist())
    seen_rows = set(torch.cat([episodes.support_index, episodes.query_index], 1).unique().tolist())
    assert seen_rows == set(range(labels.numel()))

    # When the smallest class is chosen, all its images are used, exactly once each.
    smallest_rows = set(torch.nonzero(labels == 42).flatten().tolist())
    for e in range(200):
        rows = torch.cat([episodes.support_index[e], episodes.query_index[e]]).tolist()
        in_smallest = [r for r in rows if r in smallest_rows]
        assert len(in_smallest) in (0, smallest)
        if in_smallest:
            assert set(in_smallest) == smallest_rows


def test_every_class_size_equal_to_episode_size():
    """shot + query equal to every class size is allowed and uses each class's images as a permutation."""
    labels = torch.arange(6).repeat_interleave(4) * 10
    shape = EpisodeShape(6, 1, 3)
    episodes = EpisodeSampler(labels, shape, seed=0).sample(torch.arange(100))
    check_valid(episodes, labels, shape)
    rows = torch.cat([episodes.support_index, episodes.query_index], 1).sort(1).values
    assert torch.equal(rows, torch.arange(24).expand(100, 24))


# --- uniformity --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_3way(digits_labels) -> tuple[Episodes, EpisodeShape]:
    shape = EpisodeShape(3, 2, 3)
    return EpisodeSampler(digits_labels, shape, seed=99).sample(torch.arange(20_000)), shape


def episode_classes(episodes: Episodes, labels: torch.Tensor, way: int) -> torch.Tensor:
    """True class of each episode label, [E, way]."""
    classes = torch.empty((episodes.ids.numel(), way), dtype=torch.int64)
    classes.scatter_(1, episodes.support_labels, labels[episodes.support_index])
    return classes


def test_classes_chosen_uniformly(many_3way, digits_labels):
    """Each class appears in a fraction way/num_classes of the episodes, and in each label slot equally often."""
    episodes, shape = many_3way
    classes = episode_classes(episodes, digits_labels, shape.way)  # [E, way]
    counts = np.bincount(classes.flatten().numpy(), minlength=10)
    expected = 20_000 * shape.way / 10
    assert np.abs(counts / expected - 1).max() < 0.05, counts
    assert chi_square_uniform(counts) > P_MIN

    # Joint (label slot, class) table: the class order within an episode is uniform too.
    table = np.zeros((shape.way, 10), dtype=np.int64)
    for slot in range(shape.way):
        table[slot] = np.bincount(classes[:, slot].numpy(), minlength=10)
    assert chi_square_uniform(table) > P_MIN
    # Label 0 is the smaller class about half of the time in 2-class comparisons: no bias toward sorted order.
    smaller_first = (classes[:, 0] < classes[:, 1]).float().mean().item()
    assert abs(smaller_first - 0.5) < 0.02


def test_class_subsets_uniform(digits_labels):
    """Floyd's algorithm gives uniform class subsets, not just uniform marginals: all 45 pairs equally likely."""
    shape = EpisodeShape(2, 1, 1)
    episodes = EpisodeSampler(digits_labels, shape, seed=3).sample(torch.arange(20_000))
    classes = episode_classes(episodes, digits_labels, 2).sort(1).values.numpy()
    pair_ids = {pair: i for i, pair in enumerate(itertools.combinations(range(10), 2))}
    counts = np.bincount([pair_ids[(a, b)] for a, b in classes], minlength=45)
    assert counts.min() > 0
    assert chi_square_uniform(counts) > P_MIN


def test_images_within_class_chosen_uniformly(many_3way, digits_labels):
    """Within a class every image is used (and used as support) about equally often; a biased pick would fail."""
    episodes, shape = many_3way
    n_rows = digits_labels.numel()
    used = np.bincount(torch.cat([episodes.support_index, episodes.query_index], 1).flatten().numpy(), minlength=n_rows)
    as_support = np.bincount(episodes.support_index.flatten().numpy(), minlength=n_rows)
    labels = digits_labels.numpy()
    for cls in range(10):
        rows = np.flatnonzero(labels == cls)
        assert used[rows].min() > 0
        assert chi_square_uniform(used[rows]) > P_MIN, cls
        assert chi_square_uniform(as_support[rows]) > P_MIN, cls
        # Of the uses of an image, the fraction as support is shot/(shot+query).
        fraction = as_support[rows].sum() / used[rows].sum()
        assert abs(fraction - shape.shot / (shape.shot + shape.query)) < 0.01


def test_nearby_episodes_are_independent(many_3way, digits_labels):
    """Episodes with nearby ids share images only as often as independent draws would (no shared random counters)."""
    episodes, shape = many_3way
    per_class = shape.shot + shape.query
    rows = torch.cat([episodes.support_index, episodes.query_index], 1)
    classes = episode_classes(episodes, digits_labels, shape.way)
    class_sizes = torch.bincount(digits_labels).double()
    for gap in (1, 2, 3, 7):
        a, b = rows[:-gap], rows[gap:]
        overlap = (a[:, :, None] == b[:, None, :]).sum((1, 2)).double()
        # Classes of episode e that episode e + gap also uses.
        shared = (classes[:-gap, :, None] == classes[gap:, None, :]).any(2)
        # Two independent draws of `per_class` of a class's m images share per_class² / m of them on average.
        expected = (shared * per_class**2 / class_sizes[classes[:-gap]]).sum(1)
        ratio = overlap.sum().item() / expected.sum().item()
        assert abs(ratio - 1) < 0.05, (gap, ratio)


def test_support_order_shuffled(digits_labels):
    """The position of each label in the shuffled support is uniform (label 0 is not always first)."""
    for shot in (1, 3):
        shape = EpisodeShape(5, shot, 1)
        episodes = EpisodeSampler(digits_labels, shape, seed=11).sample(torch.arange(20_000))
        for label in (0, 4):
            positions = torch.nonzero(episodes.support_labels == label)[:, 1].numpy()
            counts = np.bincount(positions, minlength=5 * shot)
            assert chi_square_uniform(counts) > P_MIN, (shot, label, counts)
        # Which row of a class is the first shot is not tied to the row's position in the class.
        first = episodes.support_index[:, 0]
        assert torch.unique(first).numel() > 0.9 * digits_labels.numel()


def test_query_labels_cover_classes_in_blocks(digits_labels):
    """Only the support is shuffled: query rows come grouped by episode label, `query` rows per label in order."""
    shape = EpisodeShape(4, 2, 3)
    episodes = EpisodeSampler(digits_labels, shape, seed=1).sample(torch.arange(50))
    expected = torch.arange(4).repeat_interleave(3).expand(50, -1)
    assert torch.equal(episodes.query_labels, expected)


# --- primitives --------------------------------------------------------------------------------------------------


def lowbias32_reference(x: int) -> int:
    mask = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & mask
    x ^= x >> 15
    x = (x * 0x846CA68B) & mask
    x ^= x >> 16
    return x


def test_hash32_matches_reference():
    """hash32 on int64 tensors equals the 32-bit lowbias32 mix, including inputs ≥ 2**31 and the extremes."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.int64).tolist()
    values += [0, 1, 2**16 - 1, 2**16, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1]
    values += rng.integers(2**31, 2**32, size=1000, dtype=np.uint64).astype(np.int64).tolist()
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [lowbias32_reference(v) for v in values]
    assert all(0 <= h < 2**32 for h in got)


def test_hash32_is_injective_on_consecutive_inputs():
    """No collisions among 2**20 consecutive inputs (at 0 and straddling 2**31), all outputs within 32 bits."""
    for start in (0, 2**31 - 2**19, 2**32 - 2**20):
        out = hash32(torch.arange(start, start + 2**20, dtype=torch.int64))
        assert int(out.min()) >= 0 and int(out.max()) < 2**32
        assert torch.unique(out).numel() == 2**20


@pytest.mark.parametrize("k", [1, 2, 5, 17])
def test_floyd_sample_distinct_and_in_range(k):
    """floyd_sample returns k distinct values in [0, population) per row, for varied populations (also == k)."""
    populations = [k, k + 1, k + 2, 2 * k, 3 * k + 1, 100, 1000, 2**20]
    population = torch.tensor(populations * 50, dtype=torch.int64)
    rows = torch.arange(population.numel(), dtype=torch.int64)
    out = floyd_sample(stream_key(0, 1), (rows,), population, k)
    assert out.shape == (population.numel(), k)
    assert bool((out >= 0).all()) and bool((out < population[:, None]).all())
    ordered = out.sort(1).values
    assert bool((ordered[:, 1:] != ordered[:, :-1]).all())
    # population == k: the whole population.
    full = ordered[population == k]
    assert torch.equal(full, torch.arange(k).expand_as(full))


def test_floyd_sample_subsets_uniform():
    """All C(6, 3) = 20 subsets are equally likely when drawing 3 of 6."""
    rows = torch.arange(20_000, dtype=torch.int64)
    out = floyd_sample(stream_key(42, 1), (rows,), torch.full_like(rows, 6), 3).sort(1).values
    subset_ids = {s: i for i, s in enumerate(itertools.combinations(range(6), 3))}
    counts = np.bincount([subset_ids[tuple(r)] for r in out.tolist()], minlength=20)
    assert chi_square_uniform(counts) > P_MIN


def test_random_projections_shape_and_batch_independence():
    """Projections are [E, dim, dim] float32 and the map of episode i does not depend on the batch."""
    ids = torch.arange(200)
    whole = random_projections(3, ids, 12)
    assert whole.shape == (200, 12, 12)
    assert whole.dtype == torch.float32
    parts = torch.cat([random_projections(3, ids[i : i + 37], 12) for i in range(0, 200, 37)])
    assert torch.equal(parts, whole)
    picked = torch.tensor([150, 3, 77, 3])
    assert torch.equal(random_projections(3, picked, 12), whole[picked])
    # Different episodes, and different seeds, give different maps.
    flat = whole.reshape(200, -1)
    assert torch.unique(flat, dim=0).shape[0] == 200
    assert not torch.equal(random_projections(4, ids, 12), whole)


def test_random_projections_distribution():
    """Entries are N(0, 1/dim): mean ≈ 0, variance ≈ 1/dim within 2%, Gaussian tails, uncorrelated neighbours."""
    dim = 16
    values = random_projections(0, torch.arange(4000), dim).double().flatten()
    n = values.numel()
    assert abs(values.mean().item()) < 5 * math.sqrt(1 / dim / n)
    assert abs(values.var().item() * dim - 1) < 0.02
    z = (values * math.sqrt(dim)).numpy()
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.005
    assert abs(np.mean(np.abs(z) < 2) - 0.9545) < 0.003
    assert abs(stats.kurtosis(z)) < 0.05
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01


# --- errors ------------------------------------------------------------------------------------------------------


def test_sampler_rejects_too_many_ways(digits_labels):
    """Asking for more classes than the split has is a UserError naming the class count."""
    with pytest.raises(UserError, match=r"11-way.*10"):
        EpisodeSampler(digits_labels, EpisodeShape(11, 1, 1), seed=0)


def test_sampler_rejects_too_many_images_per_class():
    """shot + query beyond the smallest class is a UserError naming the smallest class size."""
    labels = synthetic_labels()  # smallest class: 9 images
    EpisodeSampler(labels, EpisodeShape(2, 4, 5), seed=0)  # exactly 9 is fine
    with pytest.raises(UserError, match=r"need 10 images per class.*smallest class.* 9"):
        EpisodeSampler(labels, EpisodeShape(2, 4, 6), seed=0)


@pytest.mark.parametrize(
    ("way", "shot", "query", "pattern"),
    [
        (1, 1, 1, r"way must be at least 2"),
        (0, 1, 1, r"way must be a positive integer"),
        (5, 0, 1, r"shot must be a positive integer"),
        (5, -1, 1, r"shot must be a positive integer"),
        (5, 1, 0, r"query must be a positive integer"),
        (5, 1, -3, r"query must be a positive integer"),
        (5, 1.5, 2, r"shot must be a positive integer"),
    ],
)
def test_episode_shape_rejects_bad_values(way, shot, query, pattern):
    """Invalid way/shot/query raise a UserError that names the offending field."""
    with pytest.raises(UserError, match=pattern):
        EpisodeShape(way, shot, query)
