"""Built-in registry entries declare their options and class attributes so that the command line can list and check
them without importing torch; these tests hold each declaration to the real class, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from gpicl_bench.encoders import ENCODERS
from gpicl_bench.errors import UserError
from gpicl_bench.learners.models import MODEL_KINDS, model_class
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.registry import Entry, Ref, signature_options
from gpicl_bench.suites import SUITES

ENTRIES = {
    f"{registry.kind} {entry.name}": entry
    for registry in (LEARNERS, SUITES, ENCODERS)
    for entry in registry
    if not entry.origin  # built in, not installed by a package
}
# The class attributes that suite listings and labels read from declarations.
SUITE_ATTRIBUTES = ("splits", "default_dir")


def described(options: dict[str, inspect.Parameter]) -> list[tuple[str, object, object]]:
    return [(name, param.annotation, param.default) for name, param in options.items()]


@pytest.mark.parametrize("key", ENTRIES)
def test_declared_options_match_the_signature(key: str) -> None:
    entry: Entry[object] = ENTRIES[key]
    assert isinstance(entry.target, str) and entry.declared is not None, "built-ins are lazy and declare options"
    assert described(entry.options()) == described(signature_options(entry.factory))


@pytest.mark.parametrize("name", [entry.name for entry in SUITES if not entry.origin])
def test_declared_suite_attributes_match_the_class(name: str) -> None:
    entry = SUITES.entry(name)
    for attribute in SUITE_ATTRIBUTES:
        assert (attribute in entry.attributes) == hasattr(entry.factory, attribute), attribute
        assert entry.attribute(attribute) == getattr(entry.factory, attribute, None), attribute


def test_a_declaration_that_drifted_is_caught() -> None:
    """The comparison above sees a changed default, a changed type and a missing option."""
    knn = LEARNERS.entry("knn")
    real = described(signature_options(knn.factory))
    for declared in ({"k": 3}, {"k": 1.0}, {}, {"k": 1, "weights": ""}):
        drifted = Entry(knn.name, knn.target, knn.description, declared)
        assert described(drifted.options()) != real


def test_the_model_kind_knob_names_every_model_kind() -> None:
    """Its help is written out; every kind the table knows must be in it."""
    kind = next(f for f in dataclasses.fields(TrainingOptions) if f.name == "kind")
    named = kind.metadata["help"].removeprefix("model kind: ").split(" (")[0].replace(" or ", ", ").split(", ")
    assert sorted(named) == sorted(MODEL_KINDS)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_model_kind_declares_what_its_class_says(kind: str) -> None:
    """The table names a real SequenceModel class, and its causal flag is the class's."""
    from gpicl_bench.learners.sequence import SequenceModel

    assert issubclass(model_class(kind), SequenceModel)
    assert MODEL_KINDS[kind].causal is model_class(kind).causal


def test_every_learner_with_options_declares_the_check_of_their_values() -> None:
    unchecked = [entry.name for entry in LEARNERS if entry.options() and entry.check is None]
    assert not unchecked


@pytest.mark.parametrize(
    "text",
    ["knn:k=0", "logreg:c=0", "metaopt:steps=0", "ridge:alpha=-1", "metaqda:dof=0", "maml:adapt_lr=0",
     "gpicl:views=-1", "gpicl:precision=bf16", "gpicl:steps=5", "lstm", "snail:fresh,way=1",
     "caml:fresh,queries=0", "gpicl:fresh,checkpoint=x.safetensors"],
)  # fmt: skip
def test_the_registry_check_refuses_what_building_refuses_with_the_same_line(text: str) -> None:
    ref = Ref.parse(text)
    with pytest.raises(UserError) as checked:
        LEARNERS.check(ref)
    with pytest.raises(UserError) as built:
        LEARNERS.build(ref)
    assert str(checked.value) == str(built.value)
