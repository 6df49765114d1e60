"""The learn2learn extra: its datasets as suite sources and its MAML as a learner where it is importable (a Python
3.10 environment: `make test-l2l`); elsewhere, both name the extra to install in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from layouts_fine_grained import write_folder
from layouts_imagenet import MINI, write_mini_pickles

from gpicl_bench.results import ResultsFile, load

HAVE_L2L = importlib.util.find_spec("learn2learn") is not None
EPISODES = ("--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "20", "--quiet")


@pytest.mark.skipif(HAVE_L2L, reason="learn2learn is installed")
@pytest.mark.parametrize("args", [["--suite", "l2l"], ["--learner", "maml"]])
def test_without_the_extra_one_line_names_it(cli, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "learn2learn").mkdir()
    result = cli("run", *args, "--data-root", tmp_path, "--episodes", "5", "--out", tmp_path / "r.h5", "--quiet")
    assert result.code == 2
    assert "pip install 'gpicl-bench[l2l]'" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "r.h5").exists()  # found before the run starts


@pytest.mark.skipif(not HAVE_L2L, reason="needs learn2learn (make test-l2l)")
def test_l2l_dataset_as_a_suite(cli, tmp_path: Path) -> None:
    """learn2learn reads its own mini-ImageNet pickles; classes and labels match this package's own reader."""
    root = tmp_path / "data"
    write_mini_pickles(root / "learn2learn")
    out = tmp_path / "l2l.h5"
    result = cli("run", "--suite", "l2l:dataset=mini-imagenet", "--data-root", root, "--learner", "protonet",
                 *EPISODES, "--out", out)  # fmt: skip
    assert result.code == 0, result.err
    assert load(out)["accuracy"].mean() == 1.0  # class colours: right only if labels align with images
    shown = cli("suites", "l2l:dataset=mini-imagenet", "--data-root", root)
    assert shown.code == 0 and str(len(MINI["test"])) in shown.out


@pytest.mark.skipif(not HAVE_L2L, reason="needs learn2learn (make test-l2l)")
def test_maml_learns_digits(cli, tmp_path: Path) -> None:
    out = tmp_path / "maml.h5"
    result = cli("run", "--suite", "digits", "--learner", "maml:meta_steps=60", "--learner", "protonet",
                 "--shots", "5", "--episodes", "100", "--out", out, "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    means = load(out).groupby("learner")["accuracy"].mean()
    assert means["maml:meta_steps=60"] > 0.6, means  # chance is 0.2


@pytest.mark.skipif(not HAVE_L2L, reason="needs learn2learn (make test-l2l)")
def test_maml_meta_trains_on_the_runs_encoder_and_data_root(cli, tmp_path: Path) -> None:
    """An image source of maml is read like the run's suites: under --data-root, through --encoder."""
    root = tmp_path / "data"
    for split, classes in (("train", "abcd"), ("test", "efg")):
        write_folder(root / "images" / split, [f"{split}-{name}" for name in classes], per_class=6)
    out = tmp_path / "maml.h5"
    result = cli("run", "--suite", "folder:root=images", "--learner",
                 "maml:source=folder:root=images,way=3,shot=1,meta_steps=5", "--encoder", "pixels:size=8",
                 "--data-root", root, "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "10",
                 "--out", out, "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    [(attrs, _)] = list(ResultsFile.open(out).groups())
    details = json.loads(attrs["learner_details"])
    assert details["source"] == "folder:root=images [pixels:size=8]" and details["dim"] == 8 * 8 * 3
