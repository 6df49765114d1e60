"""Processes killed or racing: a checkpoint killed while saving never pairs weights with a config they do not belong
to, and two writers of one results file never mix or damage it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpicl_bench import checkpoints, engine
from gpicl_bench.learners.models import build_model, load_model
from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel
from gpicl_bench.results import ResultsFile, load
from gpicl_bench.spec import Spec

SAVER = """
import sys, torch
from gpicl_bench import checkpoints
from gpicl_bench.learners.models import build_model
from gpicl_bench.learners.sequence import SequenceConfig
path = sys.argv[1]
print("ready", flush=True)
for round in range(1, 10_000):
    torch.manual_seed(round)
    model = build_model(SequenceConfig(d_model=64, layers=2, heads=1))
    checkpoints.save(path, model, {"round": round})
"""


def _model(round: int) -> SequenceModel:
    torch.manual_seed(round)
    return build_model(SequenceConfig(d_model=64, layers=2, heads=1))


@pytest.mark.slow
def test_kill_during_checkpoint_save_never_mixes_weights_and_config(tmp_path: Path) -> None:
    """Saves replace a format 1 pair (weights beside NAME.json), then each other, while kill -9 lands at many
    moments: what loads is always one whole save, its weights the ones its config names."""
    path = tmp_path / "ck.safetensors"
    checkpoints.save(path, _model(0), {"round": 0})
    config = checkpoints.read_metadata(path)
    save_file(load_file(str(path)), str(path))  # format 1: weights only, config beside them
    (tmp_path / "ck.json").write_text(json.dumps({**config, "format_version": 1}))
    rounds = set()
    for attempt in range(12):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert saver.stdout is not None and saver.stdout.readline() == "ready\n"
        time.sleep(0.02 + 0.05 * attempt)
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        loaded, metadata = load_model(path)  # checks the weights' digest against the config
        rounds.add(metadata["round"])
        expected = _model(metadata["round"]).state_dict()
        for name, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, expected[name]), (metadata["round"], name)
    assert len(rounds) > 2  # the kills landed at different saves


def _start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gpicl_bench", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


RUN = ["--suite", "digits", "--learner", "knn", "--learner", "protonet", "--episodes", "2000", "--quiet"]


@pytest.mark.slow
def test_two_runs_on_one_output_never_mix(tmp_path: Path) -> None:
    """Two runs of different settings started together on one --out: one writes the file, the other is refused
    with one line, and the file holds only the groups of the spec it stores."""
    for trial in range(3):
        out = tmp_path / f"r{trial}.h5"
        first, second = (
            _start("run", *RUN, "--shots", "1", "--out", out),
            _start("run", *RUN, "--shots", "2", "--out", out),
        )
        outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, 2], outcomes
        refused = next(err for code, err in outcomes if code == 2)
        assert len(refused.strip().splitlines()) == 1 and "Traceback" not in refused
        stored = json.loads(ResultsFile.open(out).attrs()["spec"])
        assert set(load(out)["shot"]) == set(stored["shots"])
        assert len(ResultsFile.open(out).group_keys()) == 2


@pytest.mark.slow
def test_two_resumes_of_one_file_never_mix(tmp_path: Path) -> None:
    """Two resumes of one file at once: one completes it, the other is refused (or finds nothing left to do); the
    file ends with each group once."""
    spec = Spec(name="r", suites=("digits",), learners=("knn", "protonet", "logreg"), shots=(1, 2), episodes=1000)
    path = tmp_path / "r.h5"
    ResultsFile.create(path, engine.run_attributes(spec)).close()
    resumes = [_start("run", "--resume", path, "--quiet") for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in resumes]
    assert 0 in [code for code, _ in outcomes], outcomes
    for code, err in outcomes:
        assert code == 0 or (code == 2 and "being written by another" in err and len(err.strip().splitlines()) == 1)
    frame = load(path)
    assert len(ResultsFile.open(path).group_keys()) == 6
    assert len(frame) == 6 * 1000  # no group twice
