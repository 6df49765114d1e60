"""Progress where no bar can redraw (stderr a pipe or a file): a line per finished group and every few minutes within
a long group, with episodes, rate and time left; and long runs that state their expected time before they start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from layouts_imagenet import MINI, write_mini_csv

from gpicl_bench import engine
from gpicl_bench.engine import RunPlan
from gpicl_bench.progress import CountLines, ProgressLines, duration, size
from gpicl_bench.results import GroupKey, ResultsFile
from gpicl_bench.spec import Spec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key(learner: str, suite: str = "digits") -> GroupKey:
    return GroupKey(suite, learner, 5, 1, 15)


def test_sizes_and_durations_read_as_people_write_them() -> None:
    assert [size(b) for b in (20_000, 999_499, 3_400_000, 12_345_678_901)] == ["20 kB", "999 kB", "3 MB", "12,346 MB"]
    assert [duration(s) for s in (0.04, 2.5, 45, 60, 725, 3600, 11_400)] == [
        "0.0 s",
        "2.5 s",
        "45 s",
        "1 min",
        "12 min 5 s",
        "1 h",
        "3 h 10 min",
    ]


def test_a_line_per_finished_group_with_rate_and_the_runs_time_left() -> None:
    """The run's time left counts each waiting group at its learner's latest rate; a learner not timed yet makes it a
    lower bound that names the learner."""
    clock, lines = Clock(), []
    progress = ProgressLines(lines.append, every=180, clock=clock)
    first, second, third = key("protonet"), key("knn"), key("protonet", "digits:project")
    progress.start(RunPlan((first, second, third), 1000, {}))
    progress.update(first, 0, 1000)
    clock.now = 1.0
    progress.update(first, 500, 1000)
    assert lines == []  # within a group, only every 180 s
    clock.now = 2.0
    progress.update(first, 1000, 1000)
    progress.update(second, 0, 1000)
    clock.now = 6.0
    progress.update(second, 1000, 1000)
    progress.update(third, 0, 1000)
    clock.now = 8.0
    progress.update(third, 1000, 1000)
    assert lines == [
        "[2.0 s] digits · protonet · 5-way 1-shot 15-query: 1,000 episodes in 2.0 s, 500 episodes/s · "
        "run: 1 of 3 groups done, ≥ 2.0 s left (knn not timed yet)",
        "[6.0 s] digits · knn · 5-way 1-shot 15-query: 1,000 episodes in 4.0 s, 250 episodes/s · "
        "run: 2 of 3 groups done, 2.0 s left",
        "[8.0 s] digits:project · protonet · 5-way 1-shot 15-query: 1,000 episodes in 2.0 s, 500 episodes/s · "
        "run: 3 of 3 groups done, 0.0 s left",
    ]


def test_a_long_group_reports_every_few_minutes_and_untimed_learners_take_the_expected_time() -> None:
    clock, lines = Clock(), []
    progress = ProgressLines(lines.append, every=180, clock=clock)
    long, later = key("gpicl"), key("logreg")
    progress.start(RunPlan((long, later), 100_000, {long: 400.0, later: 1000.0}))
    progress.update(long, 0, 100_000)
    for now, done in ((100, 20_000), (181, 36_200), (300, 60_000), (362, 72_400)):
        clock.now = now
        progress.update(long, done, 100_000)
    assert lines == [
        "[3 min 1 s] digits · gpicl · 5-way 1-shot 15-query: 36,200 of 100,000 episodes, 200 episodes/s, 5 min 19 s "
        "left · run: 0 of 2 groups done, 21 min 59 s left",
        "[6 min 2 s] digits · gpicl · 5-way 1-shot 15-query: 72,400 of 100,000 episodes, 200 episodes/s, 2 min 18 s "
        "left · run: 0 of 2 groups done, 18 min 58 s left",
    ]


def test_piped_stderr_gets_a_line_per_group(tmp_path: Path) -> None:
    """The CLI with stderr a pipe, as in a batch job's log: one line per group, and nothing else."""
    command = [sys.executable, "-m", "gpicl_bench", "run", "--suite", "digits", "--learner", "protonet",
               "--learner", "knn", "--shots", "1", "--shots", "2", "--episodes", "300",
               "--out", tmp_path / "r.h5"]  # fmt: skip
    result = subprocess.run(
        list(map(str, command)),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    pattern = (
        r"\[[0-9.]+ s\] digits · (protonet|knn) · 5-way [12]-shot 15-query: 300 episodes in [0-9.]+ s, "
        r"[0-9,]+ episodes/s · run: (\d) of 4 groups done, (≥ )?[0-9.]+ s left( \(knn not timed yet\))?"
    )
    for number, line in enumerate(lines, 1):
        match = re.fullmatch(pattern, line)
        assert match and int(match.group(2)) == number, line
    assert lines[-1].endswith("4 of 4 groups done, 0.0 s left")


def test_a_long_run_states_its_expected_time_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the first episode, a long run's groups are timed; the estimate is of the right order."""
    monkeypatch.setattr(engine, "LONG_RUN_EPISODES", 8000)
    spec = Spec(name="long", suites=("digits",), learners=("protonet", "knn"), shots=(1,), episodes=4000)
    plans = []
    with ResultsFile.create(tmp_path / "r.h5", engine.run_attributes(spec)) as results:
        outcomes = engine.run(spec, results, torch.device("cpu"), 1000, on_start=plans.append)
    [plan] = plans
    assert plan.groups == tuple(outcome.key for outcome in outcomes)
    assert plan.total_episodes == 8000 and plan.result_bytes == 8000 * engine.BYTES_PER_EPISODE
    for outcome in outcomes:  # loose: on a shared machine one batch's time swings tenfold; a slip in the
        # arithmetic (per episode vs per batch or per group) is off by hundreds
        assert 0.02 < plan.seconds[outcome.key] / outcome.seconds < 50, (plan.seconds, outcome)


def test_the_long_run_line(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "LONG_RUN_EPISODES", 1000)
    result = cli("run", "--suite", "digits", "--learner", "protonet", "--shots", "1", "--episodes", "1000",
                 "--out", tmp_path / "r.h5", "--quiet")  # fmt: skip
    assert result.code == 0
    assert re.search(
        r"a long run: 1 group of 1,000 episodes \(1,000 in all, results about 20 kB\), expected to take about "
        r"[0-9.]+ s \(from a timed batch of each group\)",
        result.err,
    ), result.err
    short = cli("run", "--suite", "digits", "--learner", "protonet", "--shots", "1", "--episodes", "999",
                "--out", tmp_path / "s.h5", "--quiet")  # fmt: skip
    assert short.code == 0 and "long run" not in short.err


def test_counted_work_reports_when_done_and_every_few_minutes() -> None:
    clock, lines = Clock(), []
    progress = CountLines(lines.append, "images", every=180, clock=clock)
    progress.update("encoding cub/test", 0, 6000)
    for now, done in ((60, 1000), (200, 4000), (250, 5000), (300, 6000)):
        clock.now = now
        progress.update("encoding cub/test", done, 6000)
    assert lines == [
        "[3 min 20 s] encoding cub/test: 4,000 of 6,000 images, 20 images/s, 1 min 40 s left",
        "[5 min] encoding cub/test: 6,000 images in 5 min, 20 images/s",
    ]


def test_encoding_says_what_it_did_per_split_where_stderr_is_not_a_terminal(cli, tmp_path: Path) -> None:
    write_mini_csv(tmp_path / "mini-imagenet")
    result = cli("features", "--suite", "mini-imagenet", "--data-root", tmp_path, "--encoder", "pixels:size=8")
    assert result.code == 0, result.err
    pattern = (
        r"\[[0-9.]+ s\] encoding mini-imagenet \[pixels:size=8\] (\w+): (\d+) images in [0-9.]+ s(, [0-9,]+ images/s)?"
    )
    found = {match[1]: int(match[2]) for match in map(lambda line: re.fullmatch(pattern, line), result.err.splitlines())
             if match}  # fmt: skip
    assert found == {split: 4 * len(names) for split, names in MINI.items()}, result.err
