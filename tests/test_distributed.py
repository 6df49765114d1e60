"""torchrun with two CPU processes (gloo) gives what one process gives: the same per-episode results file for
``run``, and for a short ``train`` the same checkpoint up to float summation order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gpicl_bench import engine
from gpicl_bench.distributed import Ranks
from gpicl_bench.results import ResultsFile, load, load_curves
from gpicl_bench.spec import Spec

pytestmark = pytest.mark.slow


def _gpicl_bench(*args: object, processes: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "gpicl_bench", *map(str, args)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_shards_cover_every_episode_once() -> None:
    for count in (0, 1, 7, 301):
        for world in (1, 2, 3, 8):
            shards = [Ranks(rank, world).shard(count) for rank in range(world)]
            assert [i for shard in shards for i in shard] == list(range(count))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_run_on_two_processes_matches_one(tmp_path: Path) -> None:
    """The same results file, a fresh learner's included: the fitting layer trains it on both processes together, as
    ``train`` does, and the model evaluates as one process's does (as checkpoints trained both ways do, below)."""
    fresh = "gpicl:fresh,d_model=16,layers=1,heads=2,steps=6,batch_size=16,eval_every=6,eval_episodes=20"
    args = ["run", "--learner", "protonet", "--learner", "logreg:steps=50", "--learner", "gpicl", "--learner", fresh,
            "--episodes", 101, "--shots", 1, "--shots", 5, "--quiet"]  # fmt: skip
    _gpicl_bench(*args, "--out", tmp_path / "one.h5")
    two = _gpicl_bench(*args, "--batch-size", 16, "--out", tmp_path / "two.h5", processes=2)
    assert two.stdout.count("results:") == 1  # rank 0 alone reports
    one_rows, two_rows = load(tmp_path / "one.h5"), load(tmp_path / "two.h5")
    columns = ["suite", "learner", "way", "shot", "query", "episode", "correct"]
    assert len(one_rows) == 2 * 4 * 101
    assert one_rows[columns].equals(two_rows[columns])
    curve_columns = ["learner", "shot", "position", "value"]
    assert load_curves(tmp_path / "one.h5")[curve_columns].equals(load_curves(tmp_path / "two.h5")[curve_columns])
    trained = [json.loads(attrs["learner_details"]) for attrs, _ in ResultsFile.open(tmp_path / "two.h5").groups()]
    trained = [details for details in trained if "training" in details and "checkpoint" not in details]  # fresh
    assert len(trained) == 2 and all(details["processes"] == 2 and details["steps"] == 6 for details in trained)
    assert all(0 <= details["metrics"]["held_out_accuracy"] <= 1 for details in trained)  # by rank 0, which writes


def test_train_on_two_processes_matches_one(tmp_path: Path) -> None:
    args = ["train", "--steps", 30, "--d-model", 32, "--layers", 1, "--heads", 2, "--batch-size", 32,
            "--eval-every", 15, "--eval-episodes", 50, "--quiet"]  # fmt: skip
    _gpicl_bench(*args, "--out", tmp_path / "one")
    _gpicl_bench(*args, "--out", tmp_path / "two", processes=2)
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys()
    # Only summation order differs; Adam, which divides by the gradient's size, can turn that into weight differences
    # far above float precision for near-zero gradients, but far below one step of the learning rate (3e-3).
    assert max((one[name] - two[name]).abs().max().item() for name in one) < 3e-4
    checkpoints = tuple(f"gpicl:checkpoint={tmp_path / name}" for name in ("one", "two"))
    spec = Spec(name="two-checkpoints", learners=checkpoints, shots=(5,), episodes=200)
    one_run, two_run = engine.run(spec, None, torch.device("cpu"), 200)
    assert np.array_equal(one_run.correct, two_run.correct)
