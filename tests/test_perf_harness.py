"""The perf harness on a tiny configuration: every section runs, its figures follow from its own timings, and
``--check`` turns a missed target into exit status 3."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "harness.py"


def _harness(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HARNESS), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
def test_every_section_on_a_tiny_configuration(tmp_path: Path) -> None:
    report = tmp_path / "perf.json"
    args = ["--quick", "--learner", "protonet", "--max-seconds", "0.02", "--repeats", "1", "--check"]
    result = _harness(*args, "--json", report)
    figures = json.loads(report.read_text())

    missed = [target["name"] for target in figures["targets"] if target["passed"] is False]
    assert result.returncode == (3 if missed else 0), result.stderr
    assert all(name in result.stderr for name in missed)
    assert ("targets missed" in result.stderr) == bool(missed)

    assert figures["checks_passed"]
    copy = figures["limits"]["copy"]["rate"]
    assert [cell["dim"] for cell in figures["evaluation"]] == [64, 512]
    for cell in figures["evaluation"]:
        run = cell["result"]
        assert run["check_passed"] and run["max_abs_difference"] == 0
        assert run["batched_rate"] == pytest.approx(run["batched_episodes"] / statistics.median(run["batched_seconds"]))
        assert run["speedup"] == pytest.approx(run["batched_rate"] / run["loop_rate"])
        assert cell["bytes_per_episode"] == 5 * (5 + 15) * cell["dim"] * 4
        assert cell["utilisation"] == pytest.approx(cell["bytes_per_episode"] * run["batched_rate"] / copy)
    training = figures["training"]
    assert 0 < training["generation_share"] < 1
    assert training["generation_share"] == pytest.approx(
        sum(training["generation_seconds"]) / sum(training["step_seconds"])
    )
    assert {point["axis"] for point in figures["scaling"]} == {"episodes", "shots", "ways", "dim"}
    assert all(point["relative"] >= 1 for point in figures["scaling"])


def test_bad_arguments_exit_2() -> None:
    result = _harness("--sections", "limits,nothing")
    assert result.returncode == 2 and "--sections" in result.stderr
