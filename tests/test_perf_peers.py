"""The peer comparison's arithmetic and its README table; easyfsl itself runs in `make perf-peers`' environment."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[1] / "benchmarks" / "perf"


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(PERF))  # the script imports its sibling harness as a script would
    return importlib.import_module("peers")


def run(peers, side: str, seed: int, episodes: int, seconds: float, correct: int, squares: int | None = None):
    return peers.Run(side, seed, episodes, seconds, correct, squares, None)


def test_ratios_are_taken_within_pairs_and_accuracies_compared(peers) -> None:
    queries = 75
    runs = []
    for seed, (easy_seconds, gpicl_seconds) in enumerate([(1.0, 0.2), (1.1, 0.25), (0.9, 0.15)]):
        runs.append(run(peers, "easyfsl", seed, 100, easy_seconds, 60 * 100))
        # every gpicl-bench episode scores 54 or 66 of 75 (mean 60, spread 6 queries)
        runs.append(run(peers, "gpicl-bench", seed, 1000, gpicl_seconds, 60 * 1000, (54**2 + 66**2) * 500))
    comparison = peers.summarise(64, runs)
    assert comparison.ratios == pytest.approx([10 * 1.0 / 0.2, 10 * 1.1 / 0.25, 10 * 0.9 / 0.15])
    assert comparison.ratio == pytest.approx(50.0)
    assert comparison.easyfsl_rate == pytest.approx(100 / 1.0) and comparison.gpicl_rate == pytest.approx(1000 / 0.2)
    assert comparison.easyfsl_accuracy == comparison.gpicl_accuracy == pytest.approx(60 / queries)
    assert comparison.agrees and comparison.accuracy_gap_in_standard_errors == 0

    standard_error = (6 / queries) * (1 / 300 + 1 / 3000) ** 0.5
    shifted = [run(peers, "easyfsl", r.seed, 100, r.seconds, 57 * 100) if r.side == "easyfsl" else r for r in runs]
    gap = peers.summarise(64, shifted)
    assert gap.accuracy_gap_in_standard_errors == pytest.approx((3 / queries) / standard_error)
    assert not gap.agrees  # 3 queries in 75 over 300 and 3,000 episodes: 8 standard errors


def test_the_table_goes_between_the_markers_only(peers, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# before\n{peers.BEGIN}\nold table\n{peers.END}\nafter\n")
    peers.write_readme(readme, "new table")
    assert readme.read_text() == f"# before\n{peers.BEGIN}\nnew table\n{peers.END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs one"):
        peers.write_readme(readme, "new table")
    assert readme.read_text() == "no markers\n"


def test_without_easyfsl_it_says_where_to_get_it() -> None:
    pytest.importorskip("torch")
    if importlib.util.find_spec("easyfsl") is not None:
        pytest.skip("easyfsl is installed here")
    result = subprocess.run([sys.executable, str(PERF / "peers.py")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "peers.py: error: easyfsl is not installed here; `make perf-peers` builds " \
        ".venv-peers with it"  # fmt: skip
