"""Sequence learners (GPICL Transformer, LSTM, CAML, SNAIL): query isolation, batch independence, the input rule,
and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpicl_bench import checkpoints
from gpicl_bench.errors import UserError
from gpicl_bench.learners.gpicl import query_mask
from gpicl_bench.learners.models import MODEL_KINDS, build_model, load_model
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.sequence import SequenceConfig, SequenceLearner, prepare_inputs, view_rotation
from gpicl_bench.registry import Ref

SMALL = {"d_model": 16, "layers": 2, "heads": 2}
CAUSAL_KINDS = [kind for kind, declared in MODEL_KINDS.items() if declared.causal]


def model(kind: str, rule: str = "centre+basis+scale") -> torch.nn.Module:
    torch.manual_seed(0)
    config = SequenceConfig(kind=kind, input_dim=12, max_classes=10, input_rule=rule, **SMALL)
    return build_model(config).eval()


def episodes(n: int = 40, support: int = 10, queries: int = 6, dim: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    support_x = torch.randn(n, support, dim, generator=generator)
    support_y = torch.randint(0, 5, (n, support), generator=generator)
    query_x = torch.randn(n, queries, dim, generator=generator)
    return support_x, support_y, query_x


def test_query_mask() -> None:
    """Causal over the support; each query sees the whole support and itself only."""
    mask = query_mask(3, 2, torch.device("cpu"))
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 1]])
    assert torch.equal(mask, expected.bool())


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_queries_never_see_each_other(kind: str) -> None:
    """Changing other queries leaves a query's logits unchanged (no query-to-query leakage)."""
    learner = SequenceLearner(model(kind))
    support_x, support_y, query_x = episodes()
    base = learner.predict(support_x, support_y, query_x, 5)
    changed = query_x.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:]) * 3
    after = learner.predict(support_x, support_y, changed, 5)
    torch.testing.assert_close(after[:, 0], base[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[:, 1:], base[:, 1:])


@pytest.mark.parametrize("kind", CAUSAL_KINDS)
def test_episode_view_matches_sequence_view(kind: str) -> None:
    """A query read after the support gives the logits of the same token appended to the support sequence."""
    m = model(kind)
    learner = SequenceLearner(m)
    support_x, support_y, query_x = episodes(n=5, queries=3)
    episode = learner.predict(support_x, support_y, query_x, 10)
    from gpicl_bench.learners.sequence import make_tokens, shift_labels

    for q in range(3):
        xs = torch.cat([support_x, query_x[:, q : q + 1]], 1)
        ys = torch.cat([support_y, torch.zeros_like(support_y[:, :1])], 1)
        tokens = make_tokens(prepare_inputs(m.config, xs, support_x.shape[1]), shift_labels(ys), 10)
        with torch.no_grad():
            sequence = m.sequence_logits(tokens)[:, -1]
        torch.testing.assert_close(episode[:, q], sequence, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_predictions_do_not_depend_on_batch(kind: str) -> None:
    """Episode i's prediction is the same alone, in a batch of 7 or of 40 (CPU)."""
    learner = SequenceLearner(model(kind))
    support_x, support_y, query_x = episodes()
    whole = learner.predict(support_x, support_y, query_x, 5).argmax(-1)
    parts = torch.cat(
        [learner.predict(support_x[i : i + 7], support_y[i : i + 7], query_x[i : i + 7], 5) for i in range(0, 40, 7)]
    ).argmax(-1)
    assert torch.equal(whole, parts)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    m = model("transformer")
    path = checkpoints.save(tmp_path / "ck", m, {"note": "test"})
    loaded, metadata = load_model(path)
    assert metadata["note"] == "test" and metadata["model"]["d_model"] == 16
    support_x, support_y, query_x = episodes(n=4)
    torch.testing.assert_close(
        SequenceLearner(loaded).predict(support_x, support_y, query_x, 5),
        SequenceLearner(m).predict(support_x, support_y, query_x, 5),
    )
    learner = LEARNERS.build(Ref.parse(f"gpicl:checkpoint={path}"))
    assert learner.to("cpu").predict(support_x, support_y, query_x, 5).shape == (4, 6, 5)


def test_half_precision_checkpoint_stores_rounded_weights(tmp_path: Path) -> None:
    """float16 storage halves the file; loading gives exactly the float16-rounded weights, computed in float32."""
    m = model("transformer")
    full = checkpoints.save(tmp_path / "full", m, {})
    half = checkpoints.save(tmp_path / "half", m, {}, "float16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_model(half)
    for name, tensor in m.state_dict().items():
        assert loaded.state_dict()[name].dtype == torch.float32
        assert torch.equal(loaded.state_dict()[name], tensor.half().float()), name


def test_bad_checkpoints_are_user_errors(tmp_path: Path) -> None:
    path = checkpoints.save(tmp_path / "ck", model("transformer"), {})
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.safetensors")

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt"):
        load_model(corrupt)

    old = tmp_path / "old.safetensors"  # format 1: weights beside NAME.json
    save_file(load_file(str(path)), str(old))
    config = checkpoints.read_metadata(path)
    config["model"]["d_model"] = 32
    old.with_suffix(".json").write_text(json.dumps({**config, "format_version": 1}))
    with pytest.raises(UserError, match="does not match its config"):
        load_model(old)

    old.with_suffix(".json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        load_model(old)


def test_learner_options_are_checked() -> None:
    with pytest.raises(UserError, match="need the flag fresh"):
        LEARNERS.build(Ref.parse("gpicl:steps=5"))
    with pytest.raises(UserError, match="lstm ships no checkpoint"):
        LEARNERS.build(Ref.parse("lstm"))
    with pytest.raises(UserError, match="either checkpoint"):
        LEARNERS.build(Ref.parse("gpicl:fresh,checkpoint=x.safetensors"))


def test_order_ensemble_averages_rotated_supports() -> None:
    """orders=k averages the log-probabilities of k rotations of the support; still batch independent."""
    m = model("transformer")
    support_x, support_y, query_x = episodes(n=12)
    ensemble = SequenceLearner(m, orders=2).predict(support_x, support_y, query_x, 5)
    single = SequenceLearner(m)
    first = torch.log_softmax(single.predict(support_x, support_y, query_x, 5), -1)
    rotated = torch.log_softmax(single.predict(support_x.roll(5, 1), support_y.roll(5, 1), query_x, 5), -1)
    torch.testing.assert_close(ensemble, (first + rotated) / 2)
    part = SequenceLearner(m, orders=2).predict(support_x[3:7], support_y[3:7], query_x[3:7], 5)
    assert torch.equal(part.argmax(-1), ensemble[3:7].argmax(-1))
    with pytest.raises(UserError):
        SequenceLearner(m, orders=0)


def test_view_ensemble_averages_rotated_inputs() -> None:
    """views=k averages the log-probabilities of the episode read as is and turned by k − 1 fixed rotations; still
    batch independent, and the shipped learner reads 4 views unless told otherwise."""
    m = model("transformer", "standardise")  # views suit rules without the basis part
    support_x, support_y, query_x = episodes(n=12)
    rotation = view_rotation(12, 1, "cpu")
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(12), atol=1e-5, rtol=0)
    assert not torch.allclose(rotation, view_rotation(12, 2, "cpu"))

    ensemble = SequenceLearner(m, views=2).predict(support_x, support_y, query_x, 5)
    single = SequenceLearner(m)
    first = torch.log_softmax(single.predict(support_x, support_y, query_x, 5), -1)
    prepared = prepare_inputs(m.config, torch.cat([support_x, query_x], 1), support_x.shape[1])
    turned_support, turned_query = (prepared @ rotation.T).split([support_x.shape[1], query_x.shape[1]], 1)
    turned = torch.log_softmax(single.predict(turned_support, support_y, turned_query, 5), -1)
    torch.testing.assert_close(ensemble, (first + turned) / 2)
    assert not torch.allclose(first, turned)
    part = SequenceLearner(m, views=2).predict(support_x[3:7], support_y[3:7], query_x[3:7], 5)
    assert torch.equal(part.argmax(-1), ensemble[3:7].argmax(-1))
    with pytest.raises(UserError):
        SequenceLearner(m, views=0)
    with pytest.raises(UserError, match="views"):  # before any meta-training
        LEARNERS.build(Ref.parse("gpicl:fresh,views=-1"))


def test_default_views_follow_the_input_rule(tmp_path: Path) -> None:
    """A model whose input rule has the basis part reads each episode once (its inputs do not change under a
    rotation); other rules, the legacy one of older checkpoints included, average 4 rotated views."""
    legacy = checkpoints.save(tmp_path / "legacy", model("transformer", "standardise"), {})
    assert LEARNERS.build(Ref.parse(f"gpicl:checkpoint={legacy}")).details()["inference"]["views"] == 4
    assert LEARNERS.build(Ref.parse("gpicl:fresh")).details()["inference"]["views"] == 1
    assert LEARNERS.build(Ref.parse("gpicl:fresh,input_rule=centre+scale")).details()["inference"]["views"] == 4
    assert LEARNERS.build(Ref.parse(f"gpicl:checkpoint={legacy},views=2")).details()["inference"]["views"] == 2


@pytest.mark.slow
def test_compiled_model_predicts_like_the_eager_one() -> None:
    """``compile`` runs the model through torch.compile (inductor on the CPU): same logits up to kernel rounding."""
    m = model("transformer")
    support_x, support_y, query_x = episodes(n=24)
    eager = SequenceLearner(m).predict(support_x, support_y, query_x, 5)
    compiled = SequenceLearner(m, compile=True).predict(support_x, support_y, query_x, 5)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="precision"):
        SequenceLearner(m, precision="fp16")
