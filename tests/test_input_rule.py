"""The input rule: each invariance it claims holds for a model's predictions, it never lets a query inform another,
and meta-training reads a sequence exactly as evaluation reads an episode."""

from __future__ import annotations

import pytest
import torch

from gpicl_bench.errors import UserError
from gpicl_bench.learners import input_rule, input_rule_grammar
from gpicl_bench.learners.models import MODEL_KINDS, build_model
from gpicl_bench.learners.sequence import SequenceConfig, SequenceLearner
from gpicl_bench.tasks import TaskBatch
from gpicl_bench.training import TrainingOptions, batch_logits

RULE = "centre+basis+scale"


def learner(rule: str = RULE, input_dim: int = 16, kind: str = "transformer") -> SequenceLearner:
    torch.manual_seed(0)
    config = SequenceConfig(kind, input_dim, max_classes=10, d_model=32, layers=2, heads=1, input_rule=rule)
    return SequenceLearner(build_model(config))


def skewed_episodes(n: int = 32, support: int = 15, queries: int = 10, dim: int = 20, seed: int = 0):
    """Episodes whose principal axes have clearly signed third moments (exponential noise around class means), so
    the basis part's sign convention is never a near tie."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 5, dim, generator=generator) * 2
    support_y = torch.arange(support).remainder(5).expand(n, -1)
    query_y = torch.randint(0, 5, (n, queries), generator=generator)

    def draw(labels: torch.Tensor) -> torch.Tensor:
        noise = torch.empty(n, labels.shape[1], dim).exponential_(generator=generator)
        return torch.gather(means, 1, labels[..., None].expand(-1, -1, dim)) + noise

    return draw(support_y), support_y, draw(query_y)


@pytest.mark.parametrize("rule", ["centre", "centre+scale", RULE])
def test_a_shift_shared_by_the_episode_changes_nothing(rule: str) -> None:
    model = learner(rule)
    support_x, support_y, query_x = skewed_episodes()
    shift = torch.randn(support_x.shape[0], 1, support_x.shape[-1]) * 50
    before = model.predict(support_x, support_y, query_x, 5)
    after = model.predict(support_x + shift, support_y, query_x + shift, 5)
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("rule", ["scale", "centre+scale", RULE])
def test_a_global_scale_changes_nothing(rule: str) -> None:
    model = learner(rule)
    support_x, support_y, query_x = skewed_episodes()
    before = model.predict(support_x, support_y, query_x, 5)
    after = model.predict(support_x * 37.5, support_y, query_x * 37.5, 5)
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


def test_the_basis_makes_predictions_rotation_invariant_and_the_fixed_map_does_not() -> None:
    support_x, support_y, query_x = skewed_episodes()
    rotation, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(1)))
    for rule, invariant in ((RULE, True), ("centre+scale", False)):
        model = learner(rule)
        before = model.predict(support_x, support_y, query_x, 5)
        after = model.predict(support_x @ rotation.T, support_y, query_x @ rotation.T, 5)
        assert torch.allclose(after, before, rtol=1e-3, atol=1e-3) == invariant, rule


def test_the_basis_keeps_every_distance_a_metric_learner_uses() -> None:
    """Centred principal coordinates move every support point by a rigid map and drop only the part of a query
    outside the support's span, which adds the same amount to its squared distance to every support point."""
    support_x, _, query_x = skewed_episodes(n=4, support=8, queries=3, dim=30)
    x = torch.cat([support_x, query_x], 1)
    prepared = input_rule.apply("centre+basis", x, 8, 16)
    raw = torch.cdist(x[:, 8:], x[:, :8]).square()
    kept = torch.cdist(prepared[:, 8:], prepared[:, :8]).square()
    excess = raw - kept
    torch.testing.assert_close(excess, excess[..., :1].expand_as(excess), rtol=1e-4, atol=1e-3)
    assert (excess > -1e-3).all()
    torch.testing.assert_close(torch.cdist(prepared[:, :8], prepared[:, :8]), torch.cdist(support_x, support_x))


def test_contexts_larger_than_the_input_size_keep_the_leading_axes() -> None:
    """80 examples in 12 dimensions: the scatter matrix gives the axes; inputs of 5 dimensions are zero-padded."""
    x = torch.randn(3, 90, 12, dtype=torch.float64)
    prepared = input_rule.apply("centre+basis", x, 80, 8)
    centred = x - x[:, :80].mean(1, keepdim=True)
    _, values, _ = torch.linalg.svd(centred[:, :80])
    torch.testing.assert_close(prepared[:, :80].norm(dim=1), values[:, :8], rtol=1e-6, atol=1e-6)
    small = input_rule.apply(RULE, torch.randn(3, 10, 5), 6, 8)
    assert small.shape == (3, 10, 8) and (small[..., 5:] == 0).all()


def test_queries_never_inform_each_other_through_the_rule() -> None:
    model = learner()
    support_x, support_y, query_x = skewed_episodes()
    before = model.predict(support_x, support_y, query_x, 5)
    changed = query_x.clone()
    changed[:, 1:] = changed[:, 1:] * 10 + 3
    after = model.predict(support_x, support_y, changed, 5)
    torch.testing.assert_close(after[:, 0], before[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_meta_training_reads_a_sequence_as_evaluation_reads_the_episode(kind: str) -> None:
    """batch_logits (the training loss's logits) at the query slots equal the learner's logits for the same
    support and queries: one rule, one read-out, for every model kind (tokens are the model's own)."""
    model = learner(kind=kind)
    support_x, support_y, query_x = skewed_episodes(n=6)
    queries = query_x.shape[1]
    options = TrainingOptions(kind=kind, way=5, max_classes=10, queries=queries, sequence_length=support_x.shape[1])
    batch = TaskBatch(
        x=torch.cat([support_x, query_x], 1),
        labels=torch.cat([support_y, torch.zeros(6, query_x.shape[1], dtype=torch.int64)], 1),
        ways=torch.full((6,), 5),
        regular=torch.ones(6, dtype=torch.bool),
        context=support_x.shape[1],
    )
    with torch.no_grad():
        training = batch_logits(model.model, batch, options)[:, -queries:]
    torch.testing.assert_close(training, model.predict(support_x, support_y, query_x, 5), rtol=1e-5, atol=1e-5)


def test_the_sequence_view_takes_its_statistics_from_the_support() -> None:
    """The in-context curve's first query position is that query read after the support, as in the episode view."""
    model = learner()
    support_x, support_y, query_x = skewed_episodes()
    sequence = torch.cat([support_x, query_x], 1)
    labels = torch.cat([support_y, torch.zeros(query_x.shape[:2], dtype=torch.int64)], 1)
    predicted = model.sequence_predictions(sequence, labels, 5, support_x.shape[1])
    episode = model.predict(support_x, support_y, query_x, 5).argmax(-1)
    assert torch.equal(predicted[:, support_x.shape[1]], episode[:, 0])


def test_rules_are_validated() -> None:
    assert input_rule_grammar.parse("scale+centre") == {"centre", "scale"}
    for bad in ("", "centre+rotate", "standardise+centre"):
        with pytest.raises(UserError, match="input rule"):
            input_rule_grammar.parse(bad)
    with pytest.raises(UserError, match="input rule"):
        TrainingOptions(input_rule="whiten")
