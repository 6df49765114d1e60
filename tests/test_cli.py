"""The command line end to end: run, compare, export-csv, listings, and one-line errors with exit code 2."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import pandas as pd
import pytest

from gpicl_bench.results import load

QUICK = ["--episodes", "40", "--shots", "1", "--learner", "protonet", "--learner", "knn", "--quiet"]
QUICK += ["--suite", "digits", "--suite", "digits:project"]


@pytest.fixture
def two_learner_file(cli, tmp_path: Path) -> Path:
    path = tmp_path / "run.h5"
    result = cli("run", *QUICK, "--out", path)
    assert result.code == 0, result.err
    return path


def one_error_line(result) -> str:
    """The error contract: exit code 2, one line on stderr, no traceback."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2, result
    assert len(lines) == 1, result.err
    assert lines[0].startswith("gpicl-bench: error: ")
    assert "Traceback" not in result.err
    return lines[0]


def test_run_writes_results_and_prints_tables(cli, tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    result = cli("run", *QUICK, "--out", path)
    assert result.code == 0
    assert "5-way 1-shot 15-query" in result.out and "episodes/s" in result.out
    frame = load(path)
    assert set(frame["learner"]) == {"protonet", "knn"}
    assert set(frame["suite"]) == {"digits", "digits:project"}
    assert len(frame) == 2 * 2 * 40


def test_default_output_goes_to_results_folder(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("run", *QUICK, "--name", "mine").code == 0
    files = list((tmp_path / "results").glob("mine-*.h5"))
    assert len(files) == 1


def test_spec_file_and_show_spec_round_trip(cli, tmp_path: Path) -> None:
    """--show-spec prints TOML that, read back as a spec, resolves to the same spec."""
    shown = cli("run", "--ways", "3", "--shots", "2", "--learner", "knn:k=1", "--show-spec")
    assert shown.code == 0
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(shown.out)
    again = cli("run", spec_path, "--show-spec")
    assert again.out == shown.out
    assert 'learners = ["knn:k=1"]' in shown.out and "ways = [3]" in shown.out


def test_compare_all_formats(cli, two_learner_file: Path, tmp_path: Path) -> None:
    for fmt, marker in [("rich", "pairs"), ("markdown", "| ---"), ("latex", r"\begin{tabular}")]:
        result = cli("compare", two_learner_file, "--format", fmt)
        assert result.code == 0 and marker in result.out, fmt
    csv = cli("compare", two_learner_file, "--format", "csv", "--test", "wilcoxon")
    pairs = pd.read_csv(io.StringIO(csv.out))
    assert len(pairs) == 2  # one pair per setting (digits, digits:project)
    assert {"learner_a", "learner_b", "difference", "ci95", "p_value", "p_holm", "best_in_setting"} <= set(pairs)
    assert (pairs["accuracy_a"] - pairs["accuracy_b"] - pairs["difference"]).abs().max() < 1e-12
    assert set(pairs["test"]) == {"wilcoxon"}


def test_compare_across_files_pairs_matching_settings(cli, tmp_path: Path) -> None:
    """Two files with the same seed pair up; a learner present in both is named with its file."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    common = ["--episodes", "30", "--shots", "1", "--suite", "digits", "--quiet"]
    assert cli("run", *common, "--learner", "protonet", "--learner", "knn", "--out", a).code == 0
    assert cli("run", *common, "--learner", "knn", "--out", b).code == 0
    pairs = pd.read_csv(io.StringIO(cli("compare", a, b, "--format", "csv").out))
    assert set(pairs["learner_a"]) | set(pairs["learner_b"]) == {"protonet", "knn [a]", "knn [b]"}
    knn_pair = pairs[pairs["learner_a"].str.startswith("knn") & pairs["learner_b"].str.startswith("knn")]
    assert knn_pair["difference"].tolist() == [0.0]  # identical learner, identical episodes


def test_export_csv_summary_and_per_episode(cli, two_learner_file: Path, tmp_path: Path) -> None:
    summary = pd.read_csv(io.StringIO(cli("export-csv", two_learner_file).out))
    assert len(summary) == 4
    assert {"suite", "learner", "way", "shot", "query", "accuracy", "ci95", "episodes"} <= set(summary)
    out = tmp_path / "episodes.csv"
    assert cli("export-csv", two_learner_file, "--per-episode", "-o", out).code == 0
    episodes = pd.read_csv(out)
    assert len(episodes) == 4 * 40
    assert {"suite", "learner", "way", "shot", "query", "episode", "accuracy"} <= set(episodes)
    means = episodes.groupby(["suite", "learner"])["accuracy"].mean().sort_index()
    assert means.to_numpy() == pytest.approx(summary.set_index(["suite", "learner"])["accuracy"].sort_index())


def test_listings(cli) -> None:
    learners = cli("learners")
    assert all(name in learners.out for name in ("protonet", "knn", "logreg"))
    assert "digits" in cli("suites").out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--suite", "digitz", "--episodes", "5"], "did you mean 'digits'"),
        (["run", "--learner", "protonett", "--episodes", "5"], "did you mean 'protonet'"),
        (["run", "--learner", "knn:j=3", "--episodes", "5"], "has no option 'j'"),
        (["run", "--learner", "knn:k=three", "--episodes", "5"], "expected a whole number"),
        (["run", "--ways", "11", "--episodes", "5"], "has 10"),
        (["run", "--shots", "50", "--queries", "15", "--episodes", "5"], "images per class"),
        (["run", "--shots", "0"], "shot must be a positive integer"),
        (["run", "--queries", "-3"], "query must be a positive integer"),
        (["run", "--ways", "1"], "way must be at least 2"),
        (["run", "--episodes", "0"], "episodes must be between"),
        (["run", "--batch-size", "0", "--episodes", "5"], "batch size must be positive"),
        (["run", "--batch-size", "lots", "--episodes", "5"], "a positive number or 'auto'"),
        (["run", "--ways", "abc"], "Invalid value for '--ways'"),
        (["run", "--split", "nope", "--episodes", "5"], "no split 'nope'"),
        (["run", "missing.toml"], "no such spec file"),
        (["compare", "missing.h5"], "no such results file"),
        (["export-csv", "missing.h5"], "no such results file"),
        (["run", "--device", "tpu", "--episodes", "5"], "unknown device"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path: Path, monkeypatch, args, expected) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(cli(*args))
    assert expected in line
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("episodes = [", "malformed TOML"),
        ("episodes = 'many'", "must be a whole number"),
        ("colour = 'blue'", "unknown field 'colour'"),
        ("learners = []", "is empty"),
        ("shots = [1, 'x']", "list of whole numbers"),
    ],
)
def test_malformed_specs(cli, tmp_path: Path, content: str, expected: str) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(content + "\n")
    assert expected in one_error_line(cli("run", spec))


def test_foreign_and_corrupt_files(cli, tmp_path: Path, two_learner_file: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    assert "not a readable HDF5 file" in one_error_line(cli("compare", text))
    other = tmp_path / "other.h5"
    h5py.File(other, "w").close()
    assert "not a gpicl-bench results file" in one_error_line(cli("export-csv", other))
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(two_learner_file.read_bytes()[:2000])
    one_error_line(cli("compare", truncated))


def test_existing_output_is_never_overwritten(cli, two_learner_file: Path) -> None:
    before = two_learner_file.read_bytes()
    assert "already exists" in one_error_line(cli("run", *QUICK, "--out", two_learner_file))
    assert two_learner_file.read_bytes() == before


def test_resume_of_complete_file_runs_nothing(cli, two_learner_file: Path) -> None:
    before = load(two_learner_file)
    result = cli("run", "--resume", two_learner_file, "--quiet")
    assert result.code == 0
    pd.testing.assert_frame_equal(load(two_learner_file), before)
    assert "--resume takes the spec" in one_error_line(cli("run", "--resume", two_learner_file, "--shots", "5"))


def test_debug_shows_traceback(cli) -> None:
    with pytest.raises(Exception, match="did you mean"):
        cli("--debug", "run", "--suite", "digitz")
