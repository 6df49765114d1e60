"""Every committed benchmark spec parses: run specs as specs, meta-training recipes as training options."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpicl_bench import checkpoints, reference
from gpicl_bench.learners.models import MODEL_KINDS, SHIPPED_DIR, load_model
from gpicl_bench.registry import Ref
from gpicl_bench.spec import load_spec, read_toml
from gpicl_bench.training import TrainingOptions

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS_DIR = REPOSITORY / "benchmarks"
BENCHMARKS = sorted(BENCHMARKS_DIR.glob("*.toml"))


def test_there_are_run_and_training_specs() -> None:
    kinds = {"source" in read_toml(path) for path in BENCHMARKS}
    assert kinds == {True, False}


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_spec_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPOSITORY)  # where the specs' commands run and their relative paths (a recipe's init) point
    values = read_toml(path)
    if "source" in values:  # a `gpicl-bench train` recipe
        options = TrainingOptions.from_values(values, str(path))
        assert {key: getattr(options, key) for key in values} == values  # every knob of the recipe taken as written
        return
    spec = load_spec(path)
    assert spec.name == values.get("name", path.stem)
    assert len(spec.learner_labels()) == len(values["learners"])  # every learner known, its options typed


# Each checkpoint in the package and the committed recipe that writes it. A recipe may start from another of them
# (`init`, a path from the repository's root): the shipped gpicl is stage 2 of a two-stage recipe.
PACKAGED_RECIPES = {
    "gpicl-mixed.safetensors": "gpicl-mixed-train.toml",
    "gpicl-mixed-stage2.safetensors": "gpicl-mixed-stage2-train.toml",
    "caml-mixed.safetensors": "caml-mixed-train.toml",
}


def test_every_packaged_checkpoint_has_a_recipe() -> None:
    assert sorted(path.name for path in SHIPPED_DIR.iterdir()) == sorted(PACKAGED_RECIPES)
    shipped = {kind: declared.shipped for kind, declared in MODEL_KINDS.items() if declared.shipped}
    assert shipped == {"transformer": "gpicl-mixed-stage2.safetensors", "caml": "caml-mixed.safetensors"}


@pytest.mark.parametrize("name", PACKAGED_RECIPES)
def test_packaged_checkpoint_comes_from_its_committed_recipe(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged weights are what `gpicl-bench train benchmarks/RECIPE.toml` writes: every knob of the recipe as
    recorded in the checkpoint, trained on the digits `train` images (and synthetic tasks) only, within the 10 MB
    budget, and — for a later stage — started from the packaged weights its recipe names."""
    monkeypatch.chdir(REPOSITORY)
    recipe = read_toml(BENCHMARKS_DIR / PACKAGED_RECIPES[name])
    packaged = SHIPPED_DIR / name
    metadata = checkpoints.read_metadata(packaged)
    assert {key: metadata["training"][key] for key in recipe} == recipe
    assert metadata["steps"] == recipe["steps"]  # ran to the end, not cut by a time budget
    assert metadata["data"]["sources"] == ["digits"] and metadata["data"]["split"] == "train"
    assert packaged.stat().st_size <= 10_000_000
    if "init" in recipe:
        earlier = Path(recipe["init"]).resolve()
        assert earlier.parent == SHIPPED_DIR and earlier.name in PACKAGED_RECIPES
        assert metadata["initial_weights"] == checkpoints.identity(earlier)
    model, _ = load_model(packaged)  # weights match the recorded architecture
    assert model.config.kind == recipe["kind"]


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
