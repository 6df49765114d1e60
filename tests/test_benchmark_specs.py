"""Every committed benchmark spec parses: run specs as specs, meta-training recipes as training options."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpicl_bench.spec import load_spec, read_toml
from gpicl_bench.training import TrainingOptions

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.toml"))


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
