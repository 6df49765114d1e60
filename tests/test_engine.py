"""The engine: results independent of batch size, resumable runs, and early checks of the whole spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gpicl_bench import batching, devices, engine
from gpicl_bench.batching import BatchSize
from gpicl_bench.episodes import EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.registry import Ref
from gpicl_bench.results import ResultsFile, load, load_curves
from gpicl_bench.spec import Spec

SMALL = Spec(
    name="small",
    episodes=120,
    suites=("digits", "digits:project"),
    learners=("protonet", "knn:k=3", "logreg:steps=100", "gpicl"),
    shots=(1, 5),
)


def run_to(path: Path, spec: Spec, batch_size: BatchSize) -> ResultsFile:
    results = ResultsFile.create(path, engine.run_attributes(spec))
    engine.run(spec, results, torch.device("cpu"), batch_size)
    return results


def per_episode(path: Path) -> dict[tuple, np.ndarray]:
    frame = load(path)
    keys = ["suite", "learner", "way", "shot", "query"]
    return {k: g.sort_values("episode")["correct"].to_numpy() for k, g in frame.groupby(keys)}


@pytest.mark.slow
def test_results_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    """Batches of 37 and of 1000 give identical per-episode results for every learner (the shipped GPICL checkpoint
    included), plain and projected, and identical in-context learning curves (summed over batches)."""
    small = run_to(tmp_path / "a.h5", SMALL, 37).path
    large = run_to(tmp_path / "b.h5", SMALL, 1000).path
    small_episodes, large_episodes = per_episode(small), per_episode(large)
    assert small_episodes.keys() == large_episodes.keys()
    assert len(small_episodes) == 2 * 2 * 4
    for key in small_episodes:
        np.testing.assert_array_equal(small_episodes[key], large_episodes[key], err_msg=str(key))
    columns = ["suite", "learner", "way", "shot", "query", "position", "value"]
    small_curves, large_curves = load_curves(small)[columns], load_curves(large)[columns]
    assert set(small_curves["learner"]) == {"gpicl"} and len(small_curves) == 2 * 5 * (1 + 15 + 5 + 15)
    pd.testing.assert_frame_equal(small_curves, large_curves)


@pytest.mark.slow
def test_auto_batch_size_gives_the_same_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` picks the batch from a memory budget; under a budget small enough that every group is split into
    several uneven batches, results equal those of a fixed batch size. The rule is the engine's, whatever the learner:
    cheap learners with different estimates of their memory show it (the shipped GPICL runs in the test above)."""
    monkeypatch.setattr(batching, "memory_budget", lambda device: 10_000_000)
    spec = dataclasses.replace(SMALL, episodes=150, learners=("protonet", "knn:k=3", "logreg:steps=100"))
    shape, cpu = EpisodeShape(5, 5, 15), torch.device("cpu")
    chosen = {
        label: batching.episodes_per_batch("auto", LEARNERS.build(Ref.parse(label)).to(cpu), shape, 64, True, cpu)
        for label in spec.learner_labels()
    }
    assert all(1 < size < 150 for size in chosen.values()), chosen
    assert len(set(chosen.values())) > 1  # the learners' own estimates differ
    auto = run_to(tmp_path / "auto.h5", spec, "auto")
    fixed = run_to(tmp_path / "fixed.h5", spec, 1000)
    assert per_episode(auto.path).keys() == per_episode(fixed.path).keys()
    for key, correct in per_episode(auto.path).items():
        np.testing.assert_array_equal(correct, per_episode(fixed.path)[key], err_msg=str(key))


def test_learners_beat_chance_on_digits(tmp_path: Path) -> None:
    """A sanity floor that a broken gather or label mix-up would fail: 5-way 5-shot digits well above 20%."""
    spec = Spec(name="floor", suites=("digits",), shots=(5,), episodes=100, learners=("protonet", "knn"))
    frame = load(run_to(tmp_path / "r.h5", spec, 50).path)
    means = frame.groupby("learner")["accuracy"].mean()
    assert (means > 0.8).all(), means


def test_resume_completes_only_missing_groups(tmp_path: Path) -> None:
    """An interrupted run keeps finished groups; resuming adds the rest, equal to an uninterrupted run."""
    spec = Spec(name="resume", suites=("digits",), shots=(1,), episodes=60, learners=("protonet", "knn"))
    path = tmp_path / "r.h5"
    results = ResultsFile.create(path, engine.run_attributes(spec))
    finished = []

    def stop_in_second_group(key, done, total):
        finished.append(key)
        if len(set(finished)) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.run(spec, results, torch.device("cpu"), 20, stop_in_second_group)
    results.close()
    assert len(ResultsFile.open(path).group_keys()) == 1

    resumed = engine.spec_for_resume(ResultsFile.open(path))
    assert resumed == spec
    seen = []
    with ResultsFile.resume(path) as appending:
        engine.run(resumed, appending, torch.device("cpu"), 20, lambda k, d, t: seen.append(k))
    assert {k.learner for k in seen} == {"knn"}
    fresh = per_episode(run_to(tmp_path / "fresh.h5", spec, 60).path)
    assert per_episode(path).keys() == fresh.keys()
    for key, values in fresh.items():
        np.testing.assert_array_equal(per_episode(path)[key], values)


def test_bad_shape_fails_before_any_group_is_written(tmp_path: Path) -> None:
    """An impossible setting later in the spec is reported before the first episode runs."""
    spec = Spec(name="bad", suites=("digits",), shots=(1, 60), episodes=10, learners=("protonet",))
    results = ResultsFile.create(tmp_path / "r.h5", engine.run_attributes(spec))
    with pytest.raises(UserError, match="images per class"):
        engine.run(spec, results, torch.device("cpu"), 10)
    assert results.group_keys() == set()


def test_device_resolution() -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device"):
        devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            devices.resolve_device("cuda")
        assert devices.resolve_device("auto") == torch.device("cpu")
