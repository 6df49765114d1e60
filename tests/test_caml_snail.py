"""CAML and SNAIL: what each architecture promises (ELMES geometry, query independence and support-order invariance
for CAML; causality for SNAIL), their checkpoints, and meta-training them through ``train`` and fresh learners."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gpicl_bench import checkpoints
from gpicl_bench.errors import UserError
from gpicl_bench.learners.caml import CAML, elmes, support_mask
from gpicl_bench.learners.models import build_model, load_model
from gpicl_bench.learners.registry import LEARNERS, learner_label
from gpicl_bench.learners.sequence import SequenceConfig, SequenceLearner
from gpicl_bench.learners.snail import SNAIL, delayed
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.registry import Ref
from gpicl_bench.results import load, load_curves

TOY = {"d_model": 16, "layers": 1, "heads": 2, "batch_size": 16, "steps": 12, "eval_every": 6, "eval_episodes": 20}


def model(kind: str, seed: int = 0) -> CAML | SNAIL:
    torch.manual_seed(seed)
    config = SequenceConfig(kind, input_dim=12, d_model=16, layers=2, heads=2, input_rule="centre+basis+scale")
    return build_model(config).eval()


def episodes(n: int = 8, support: int = 10, queries: int = 6, dim: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    support_x = torch.randn(n, support, dim, generator=generator)
    support_y = torch.arange(support).remainder(5).expand(n, -1)
    query_x = torch.randn(n, queries, dim, generator=generator)
    return support_x, support_y, query_x


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_elmes_are_equal_length_and_maximally_equiangular(classes: int) -> None:
    """Unit vectors whose pairwise cosines all equal −1/(K − 1), the least K equal-length vectors can share (their
    sum is zero)."""
    vectors = elmes(classes).double()
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(classes, dtype=torch.float64))
    cosines = vectors @ vectors.T
    off_diagonal = cosines[~torch.eye(classes, dtype=torch.bool)]
    torch.testing.assert_close(off_diagonal, torch.full_like(off_diagonal, -1 / (classes - 1)))
    torch.testing.assert_close(vectors.sum(0), torch.zeros(classes, dtype=torch.float64))


def test_caml_label_embeddings_are_the_fixed_elmes_under_a_learned_scale() -> None:
    """The ELMES is no weight (nor in checkpoints); the scale and the unknown-label embedding are."""
    caml = model("caml")
    assert torch.equal(caml.label_vectors, elmes(10))
    weights = dict(caml.named_parameters())
    assert "label_scale" in weights and weights["label_scale"].shape == () and "unknown_label" in weights
    assert "label_vectors" not in caml.state_dict()


def test_caml_attention_mask() -> None:
    """Support tokens see the whole support; a query sees the support and itself."""
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 1]])
    assert torch.equal(support_mask(3, 2, torch.device("cpu")), expected.bool())


def test_caml_queries_never_inform_each_other_whatever_their_number() -> None:
    """A query's logits are the same alone, among 6 queries, or among changed other queries."""
    learner = SequenceLearner(model("caml"))
    support_x, support_y, query_x = episodes()
    all_queries = learner.predict(support_x, support_y, query_x, 5)
    for q in range(query_x.shape[1]):
        alone = learner.predict(support_x, support_y, query_x[:, q : q + 1], 5)
        torch.testing.assert_close(alone[:, 0], all_queries[:, q], rtol=1e-5, atol=1e-5)
    changed = torch.cat([query_x[:, :1], 3 * torch.randn_like(query_x[:, 1:])], 1)
    others_changed = learner.predict(support_x, support_y, changed, 5)
    torch.testing.assert_close(others_changed[:, 0], all_queries[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(others_changed[:, 1:], all_queries[:, 1:])


def test_caml_reads_the_support_as_a_set_with_its_labels() -> None:
    """No positions: any order of the support gives the same logits; its labels change them."""
    learner = SequenceLearner(model("caml"))
    support_x, support_y, query_x = episodes()
    logits = learner.predict(support_x, support_y, query_x, 5)
    order = torch.randperm(support_x.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = learner.predict(support_x[:, order], support_y[:, order], query_x, 5)
    torch.testing.assert_close(shuffled, logits, rtol=1e-5, atol=1e-5)
    relabelled = learner.predict(support_x, (support_y + 1) % 5, query_x, 5)
    assert not torch.allclose(relabelled, logits, rtol=1e-3, atol=1e-3)


def test_snail_position_never_sees_later_tokens() -> None:
    """Changing the tokens from position t on leaves the logits of positions before t unchanged, and changes t's."""
    snail = model("snail")
    tokens = torch.randn(3, 40, snail.token_dim)
    with torch.no_grad():
        before = snail.sequence_logits(tokens)
        for t in (1, 7, 23, 39):  # past each dilation's reach and within it
            changed = tokens.clone()
            changed[:, t:] = torch.randn_like(changed[:, t:])
            after = snail.sequence_logits(changed)
            torch.testing.assert_close(after[:, :t], before[:, :t], rtol=1e-5, atol=1e-5)
            assert not torch.allclose(after[:, t], before[:, t])


def test_snail_convolutions_read_dilated_positions() -> None:
    """A delayed copy is x_{t−d} with zeros before the start; a query (after the context) reads x_{context−d}."""
    x = torch.arange(1.0, 8.0)[None, :, None]  # 5 context positions, then 2 queries
    assert delayed(x, 2, 5).flatten().tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert delayed(x, 8, 5).flatten().tolist() == [0] * 7


def test_snail_memory_estimate_counts_its_growing_features() -> None:
    """SNAIL appends every block's output to its features: the estimate counts the widest, not just d_model."""
    snail = model("snail")
    assert snail.activations_per_token() > 2 * snail.head.in_features > 12 * snail.config.d_model


@pytest.mark.parametrize("kind", ["caml", "snail"])
def test_checkpoint_round_trip(kind: str, tmp_path: Path) -> None:
    """A saved model loads with the same logits, by path and as a learner; other kinds' learners refuse it."""
    original = model(kind)
    path = checkpoints.save(tmp_path / kind, original, {"note": "test"}, "float32")
    loaded, metadata = load_model(path)
    assert type(loaded) is type(original) and metadata["model"]["kind"] == kind
    support_x, support_y, query_x = episodes(n=4)
    expected = SequenceLearner(original).predict(support_x, support_y, query_x, 5)
    torch.testing.assert_close(SequenceLearner(loaded).predict(support_x, support_y, query_x, 5), expected)
    learner = LEARNERS.build(Ref.parse(f"{kind}:checkpoint={path}"))
    torch.testing.assert_close(learner.predict(support_x, support_y, query_x, 5), expected)
    with pytest.raises(UserError, match=f"holds a {kind} model, not a transformer"):
        LEARNERS.build(Ref.parse(f"gpicl:checkpoint={path}"))


def test_without_a_checkpoint_snail_says_how_to_get_one() -> None:
    with pytest.raises(UserError, match="snail ships no checkpoint: use snail:checkpoint=PATH or snail:fresh"):
        LEARNERS.build(Ref.parse("snail"))


def test_caml_alone_is_the_shipped_checkpoint() -> None:
    learner = LEARNERS.build(Ref.parse("caml"))
    assert learner.details()["checkpoint"] == "gpicl_bench/checkpoints/caml-mixed.safetensors"
    assert learner.details()["model"]["kind"] == "caml"


def test_caml_is_trained_on_query_slots() -> None:
    with pytest.raises(UserError, match="caml sees the context's labels and learns from query slots"):
        TrainingOptions(kind="caml", queries=0)
    assert TrainingOptions(kind="snail", queries=0).queries == 0  # causal: it learns from every position


def test_train_and_run_caml_and_snail_through_the_cli(cli, tmp_path: Path) -> None:
    """``train --kind caml`` writes a checkpoint whose learned label scale moved; ``run`` evaluates it beside a fresh
    SNAIL meta-trained on the spot; only the causal SNAIL has an in-context learning curve."""
    flags = [text for knob, value in TOY.items() for text in (f"--{knob.replace('_', '-')}", str(value))]
    out = tmp_path / "caml-toy"
    trained = cli("train", "--kind", "caml", *flags, "--quiet", "--out", out)
    assert trained.code == 0, trained.err
    config = checkpoints.read_metadata(out.with_suffix(".safetensors"))
    assert config["model"]["kind"] == "caml" and config["steps"] == 12
    assert [entry["step"] for entry in config["metrics"]["history"]] == [6, 12]
    caml, _ = load_model(out.with_suffix(".safetensors"))
    assert not math.isclose(caml.label_scale.item(), 1.0)  # its initial value: training reached the scale

    results = tmp_path / "r.h5"
    snail = "snail:fresh," + ",".join(f"{knob}={value}" for knob, value in TOY.items())
    args = ["--suite", "digits:project", "--shots", "2", "--episodes", "20", "--quiet", "--out", results]
    ran = cli("run", "--learner", f"caml:checkpoint={out}.safetensors", "--learner", snail, *args)
    assert ran.code == 0, ran.err
    frame = load(results)
    caml_label = f"caml:checkpoint=caml-toy@{config['weights_sha256'][:10]}"
    snail_label = learner_label(Ref.parse(snail))
    assert set(frame["learner"]) == {caml_label, snail_label}
    assert frame["accuracy"].between(0, 1).all()
    assert set(load_curves(results)["learner"]) == {snail_label}


def test_a_non_causal_model_without_query_slots_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("train", "--kind", "caml", "--queries", "0", "--steps", "1", "--out", tmp_path / "x")
    assert result.code == 2 and result.err.count("\n") == 1 and "queries must be ≥ 1" in result.err
    assert not list(tmp_path.iterdir())
