"""The meta-training task stream: a pure function of (seed, step, sequence), with the paper's knobs."""

from __future__ import annotations

import pytest
import torch

from gpicl_bench.errors import UserError
from gpicl_bench.suites import open_suite
from gpicl_bench.task_distribution import TaskDistribution
from gpicl_bench.tasks import TaskStream


@pytest.fixture(scope="module")
def train_split():
    return open_suite("digits").suite.load("train")


def test_batches_are_deterministic_and_sliceable(train_split) -> None:
    """Same step → same batch; any slice of a batch equals that part of the whole (process sharding)."""
    stream = TaskStream(train_split, TaskDistribution(seed=3))
    batch = stream.batch(7, 16)
    x, y, ways = batch.x, batch.labels, batch.ways
    again = TaskStream(train_split, TaskDistribution(seed=3)).batch(7, 16)
    x2, y2 = again.x, again.labels
    assert torch.equal(x, x2) and torch.equal(y, y2)
    part = stream.batch(7, 16, first=10, count=6)
    xs, ys = part.x, part.labels
    assert torch.equal(xs, x[10:16]) and torch.equal(ys, y[10:16])
    x3 = stream.batch(8, 16).x
    assert not torch.equal(x3, x)
    assert (ways == 5).all() and y.max() < 5 and y.min() >= 0


def test_labels_follow_the_task_mapping(train_split) -> None:
    """Without projection, within a sequence each label always comes from one class (a consistent permutation)."""
    stream = TaskStream(train_split, TaskDistribution(project=False, length=60))
    batch = stream.batch(0, 32)
    x, y = batch.x, batch.labels
    rows = {tuple(r.tolist()): c for r, c in zip(train_split.features, train_split.labels, strict=True)}
    for b in range(32):
        classes_per_label: dict[int, set[int]] = {}
        for t in range(60):
            classes_per_label.setdefault(int(y[b, t]), set()).add(int(rows[tuple(x[b, t].tolist())]))
        assert all(len(c) == 1 for c in classes_per_label.values())
        assert len({next(iter(c)) for c in classes_per_label.values()}) == len(classes_per_label)


def test_finite_pool_repeats_tasks(train_split) -> None:
    """With tasks=4 only four projections ever appear; with fresh tasks they never repeat."""
    pooled = TaskStream(train_split, TaskDistribution(tasks=4))
    ids = torch.cat([pooled.task_ids(step, torch.arange(64)) for step in range(5)])
    assert set(ids.tolist()) <= {0, 1, 2, 3} and len(set(ids.tolist())) == 4
    fresh = TaskStream(train_split, TaskDistribution())
    ids = torch.cat([fresh.task_ids(step, torch.arange(64)) for step in range(5)])
    assert len(set(ids.tolist())) == 320


def test_bias_fraction_fixes_the_first_sequences(train_split) -> None:
    """The biased share of a batch uses one fixed task: identical label→class mapping and projection."""
    stream = TaskStream(train_split, TaskDistribution(bias_fraction=0.25, project=False, length=200))
    batch = stream.batch(0, 8)
    x, y = batch.x, batch.labels
    assert batch.regular.tolist() == [False, False] + [True] * 6
    rows = {tuple(r.tolist()): c for r, c in zip(train_split.features, train_split.labels, strict=True)}
    for b in range(2):  # round(0.25 * 8) = 2 biased sequences
        assert all(int(rows[tuple(x[b, t].tolist())]) == int(y[b, t]) for t in range(200))


def test_way_range(train_split) -> None:
    stream = TaskStream(train_split, TaskDistribution(way=6, min_way=2))
    batch = stream.batch(0, 256)
    y, ways = batch.labels, batch.ways
    assert set(ways.tolist()) == {2, 3, 4, 5, 6}
    assert (y < ways[:, None]).all()


def test_invalid_distributions(train_split) -> None:
    with pytest.raises(UserError):
        TaskDistribution(way=1)
    with pytest.raises(UserError):
        TaskDistribution(way=5, min_way=7)
    with pytest.raises(UserError, match="classes"):
        TaskStream(train_split, TaskDistribution(way=11))


def test_copy_tasks_repeat_one_image_per_class(train_split) -> None:
    """Copy tasks (the last share of a batch) show one identical input per label; regular tasks do not."""
    stream = TaskStream(train_split, TaskDistribution(copy_fraction=0.5, length=40))
    batch = stream.batch(0, 8)
    assert batch.regular.tolist() == [True] * 4 + [False] * 4
    for b in range(8):
        distinct = {
            len({tuple(batch.x[b, t].tolist()) for t in range(40) if batch.labels[b, t] == k})
            for k in batch.labels[b].unique().tolist()
        }
        assert (distinct == {1}) == (b >= 4)


MIXED = {"mix": (0.25, 0.25, 0.25, 0.25), "length": 20, "min_length": 3, "queries": 4}


def test_mixed_sources_are_deterministic_and_sliceable(train_split) -> None:
    """Every source's share of a batch is a pure function of (seed, step, sequence): any slice of a batch equals
    that part of the whole (up to the last-bit rounding of a batched matrix product of another size), and the same
    options give the same batch."""
    stream = TaskStream(train_split, TaskDistribution(**MIXED, seed=5))
    whole = stream.batch(3, 32)
    again = TaskStream(train_split, TaskDistribution(**MIXED, seed=5)).batch(3, 32)
    assert torch.equal(whole.x, again.x) and torch.equal(whole.labels, again.labels)
    for first, count in ((0, 5), (7, 9), (20, 12)):
        part = stream.batch(3, 32, first=first, count=count)
        torch.testing.assert_close(part.x, whole.x[first : first + count], rtol=1e-6, atol=1e-5)
        assert torch.equal(part.labels, whole.labels[first : first + count])
    assert whole.x.isfinite().all() and whole.x.shape == (32, whole.context + 4, 64)
    assert TaskDistribution(**MIXED).source_counts(32) == [8, 8, 8, 8]
    for source in range(4):  # each synthetic family varies across its sequences: not one fixed pattern
        block = whole.x[8 * source : 8 * source + 8]
        assert block.std(0).mean() > 0.1


def test_context_length_varies_by_step_within_its_range(train_split) -> None:
    stream = TaskStream(train_split, TaskDistribution(**MIXED))
    lengths = {stream.context_length(step) for step in range(200)}
    assert lengths == set(range(3, 21))
    batch = stream.batch(11, 8)
    assert batch.x.shape[1] == batch.context + 4 and batch.context == stream.context_length(11)


def test_synthetic_tasks_of_a_pool_repeat_their_classes(train_split) -> None:
    """A synthetic task is its id: copy sequences (no example noise) of the same pooled task show the same input for
    the same label at every step, while examples of regular sequences vary."""
    options = {**MIXED, "mix": (0.0, 1.0, 1.0, 1.0), "tasks": 1, "copy_fraction": 1.0, "min_length": 0}
    stream = TaskStream(train_split, TaskDistribution(**options))
    first, later = stream.batch(1, 6), stream.batch(2, 6)
    for batch in (first, later):
        for b in range(6):
            for label in batch.labels[b].unique():
                rows = batch.x[b][batch.labels[b] == label]
                assert torch.equal(rows, rows[:1].expand_as(rows))
    inputs_of = lambda batch, b: {int(k): batch.x[b][batch.labels[b] == k][0] for k in batch.labels[b].unique()}  # noqa: E731
    for b in range(6):
        shared = inputs_of(first, b).keys() & inputs_of(later, b).keys()
        assert shared and all(torch.equal(inputs_of(first, b)[k], inputs_of(later, b)[k]) for k in shared)
    regular = TaskStream(train_split, TaskDistribution(**{**options, "copy_fraction": 0.0})).batch(1, 6)
    label = regular.labels[0, 0]
    rows = regular.x[0][regular.labels[0] == label]
    assert len(rows) > 1 and not torch.equal(rows, rows[:1].expand_as(rows))


def test_balanced_share_gives_equal_class_counts(train_split) -> None:
    stream = TaskStream(train_split, TaskDistribution(length=20, way=5, balanced=1.0))
    counts = torch.nn.functional.one_hot(stream.batch(0, 16).labels, 5).sum(1)
    assert (counts == 4).all()
    unbalanced = TaskStream(train_split, TaskDistribution(length=20, way=5, balanced=0.0)).batch(0, 16).labels
    assert not (torch.nn.functional.one_hot(unbalanced, 5).sum(1) == 4).all()


def test_invalid_mixtures_and_lengths_are_refused() -> None:
    with pytest.raises(UserError, match="mix_suite"):
        TaskDistribution(mix=(0.0, 0.0, 0.0, 0.0))
    with pytest.raises(UserError, match="min_length"):
        TaskDistribution(length=10, min_length=11)
    with pytest.raises(UserError, match="balanced"):
        TaskDistribution(balanced=1.5)
