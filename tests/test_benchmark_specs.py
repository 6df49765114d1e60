"""Every committed benchmark spec parses: run specs as specs, meta-training recipes as training options."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpicl_bench import checkpoints, reference
from gpicl_bench.learners.models import MODEL_KINDS, load_model
from gpicl_bench.registry import Ref
from gpicl_bench.spec import load_spec, read_toml
from gpicl_bench.training import TrainingOptions

BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARKS = sorted(BENCHMARKS_DIR.glob("*.toml"))


def test_there_are_run_and_training_specs() -> None:
    kinds = {"source" in read_toml(path) for path in BENCHMARKS}
    assert kinds == {True, False}


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_spec_is_valid(path: Path) -> None:
    values = read_toml(path)
    if "source" in values:  # a `gpicl-bench train` recipe
        options = TrainingOptions.from_values(values, str(path))
        assert {key: getattr(options, key) for key in values} == values  # every knob of the recipe taken as written
        return
    spec = load_spec(path)
    assert spec.name == values.get("name", path.stem)
    assert len(spec.learner_labels()) == len(values["learners"])  # every learner known, its options typed


# Each shipped checkpoint and the committed recipe that writes it.
SHIPPED_RECIPES = {"transformer": "gpicl-mixed-train.toml", "caml": "caml-mixed-train.toml"}


def test_every_shipped_checkpoint_has_a_recipe() -> None:
    assert {kind for kind, declared in MODEL_KINDS.items() if declared.shipped} == set(SHIPPED_RECIPES)


@pytest.mark.parametrize("kind", SHIPPED_RECIPES)
def test_shipped_checkpoint_comes_from_its_committed_recipe(kind: str) -> None:
    """The shipped weights are what `gpicl-bench train benchmarks/RECIPE.toml` writes: every knob of the recipe as
    recorded in the checkpoint, trained on the digits `train` images (and synthetic tasks) only, and within the 10 MB
    budget."""
    recipe = read_toml(BENCHMARKS_DIR / SHIPPED_RECIPES[kind])
    shipped = MODEL_KINDS[kind].shipped_checkpoint()
    metadata = checkpoints.read_metadata(shipped)
    assert {key: metadata["training"][key] for key in recipe} == recipe
    assert metadata["steps"] == recipe["steps"]  # ran to the end, not cut by a time budget
    assert metadata["data"]["sources"] == ["digits"] and metadata["data"]["split"] == "train"
    assert shipped.stat().st_size <= 10_000_000
    model, _ = load_model(shipped)  # weights match the recorded architecture
    assert model.config.kind == kind


def test_caml_table_spec_covers_every_suite_of_the_paper() -> None:
    """Every suite of the CAML table, required or optional, is one the published rows key (so `compare --format
    table --reference caml-2024` fills every column), in the paper's protocol."""
    spec = load_spec(BENCHMARKS_DIR / "caml-table.toml")
    suites = spec.suites + spec.optional_suites
    assert sorted(reference.suite_base(suite) for suite in suites) == sorted(
        set(reference.load("caml-2024").rows["suite"])
    )
    assert (spec.ways, spec.shots, spec.queries, spec.episodes) == ((5,), (1, 5), (16,), 10_000)


def test_caml_table_digits_has_the_caml_table_shape() -> None:
    """The digits version runs the same learners (the shipped checkpoints instead of CLIP-feature ones) with the same
    episode shapes, so its table previews the paper's."""
    full, digits = (load_spec(BENCHMARKS_DIR / name) for name in ("caml-table.toml", "caml-table-digits.toml"))
    assert [Ref.parse(text).name for text in digits.learners] == [Ref.parse(text).name for text in full.learners]
    shape = ("ways", "shots", "queries", "episodes", "seed", "split")
    assert [getattr(digits, key) for key in shape] == [getattr(full, key) for key in shape]
    assert "digits:project" in digits.suites and not digits.optional_suites
