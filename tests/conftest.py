"""Shared helpers: run the CLI in-process and capture its exit code and streams."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpicl_bench.cli import main

# Meta-training options that make a fresh sequence learner in seconds, for tests whose subject is not its accuracy.
TINY_TRAINING = "d_model=8,layers=1,steps=2,batch_size=4,eval_every=2,eval_episodes=10"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Call ``gpicl-bench`` with the given arguments; return exit code, stdout and stderr."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(int(exit_info.value.code or 0), captured.out, captured.err)

    return invoke


@pytest.fixture(autouse=True)
def _feature_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's feature cache nor read a data root from the environment."""
    monkeypatch.setenv("GPICL_BENCH_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
    monkeypatch.delenv("GPICL_BENCH_DATA", raising=False)
