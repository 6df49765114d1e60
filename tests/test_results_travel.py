"""Results travel between machines: suite labels hold no machine path, the data is identified by a fingerprint of its
index files stored beside the label, and `compare` pairs runs of the same data wherever it lived."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import h5py
import pandas as pd
from layouts_fine_grained import write_folder
from layouts_imagenet import write_mini_csv

from gpicl_bench.features import FeatureSettings
from gpicl_bench.results import load
from gpicl_bench.suites import open_suite

EPISODES = ("--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "20", "--encoder", "pixels:size=8")


def _run(cli, out: Path, suite: str, learner: str, data_root: Path | None = None) -> None:
    where = ("--data-root", data_root) if data_root is not None else ()
    result = cli("run", "--suite", suite, *where, "--learner", learner, *EPISODES, "--out", out, "--quiet")
    assert result.code == 0, result.err


def _pairs(cli, *files: Path) -> tuple[pd.DataFrame, str]:
    result = cli("compare", *files, "--format", "csv")
    assert result.code == 0, result.err
    return pd.read_csv(io.StringIO(result.out)), result.err


def _copy_elsewhere(source: Path, target: Path) -> None:
    """The same dataset on another machine: another path, files written at another time."""
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        os.utime(path, ns=(10**18, 10**18))


def test_same_data_under_two_roots_gets_one_label_and_compare_pairs_it(cli, tmp_path: Path) -> None:
    write_mini_csv(tmp_path / "here" / "mini-imagenet")
    _copy_elsewhere(tmp_path / "here", tmp_path / "there")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _run(cli, a, "mini-imagenet", "protonet", tmp_path / "here")
    _run(cli, b, "mini-imagenet", "knn", tmp_path / "there")
    labels = {file: set(load(file)["suite"]) for file in (a, b)}
    assert labels[a] == labels[b] == {"mini-imagenet [pixels:size=8]"}
    fingerprints = {file: set(load(file)["data_fingerprint"]) for file in (a, b)}
    assert fingerprints[a] == fingerprints[b] and len(fingerprints[a]) == 1 and "" not in fingerprints[a]
    pairs, err = _pairs(cli, a, b)
    assert len(pairs) == 1 and {pairs["learner_a"][0], pairs["learner_b"][0]} == {"protonet", "knn"}
    assert "different data" not in err


def test_an_absolute_root_is_named_by_its_last_folder(cli, tmp_path: Path) -> None:
    for machine in ("one", "two"):
        write_folder(tmp_path / machine / "shapes", ["a", "b", "c"], per_class=4)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _run(cli, a, f"folder:root={tmp_path / 'one' / 'shapes'}", "protonet")
    _run(cli, b, "folder:root=shapes", "knn", tmp_path / "two")
    assert set(load(a)["suite"]) == set(load(b)["suite"]) == {"folder:root=shapes [pixels:size=8]"}
    assert len(_pairs(cli, a, b)[0]) == 1


def test_labels_hold_no_machine_path(tmp_path: Path) -> None:
    """A suite with its own folder name is named by it alone; a generic one by its root's last folder."""
    write_mini_csv(tmp_path / "elsewhere" / "my-copy")
    (tmp_path / "mnist").mkdir()
    settings = FeatureSettings(data_root=str(tmp_path / "unused"))
    mini = open_suite(f"mini-imagenet:root={tmp_path / 'elsewhere' / 'my-copy'}", settings)
    assert mini.label == "mini-imagenet [pixels]"
    assert open_suite(f"idx:root={tmp_path / 'mnist'},resize=8").label == "idx:resize=8,root=mnist"


def test_different_data_under_one_label_is_flagged(cli, tmp_path: Path) -> None:
    write_folder(tmp_path / "one" / "shapes", ["a", "b", "c"], per_class=4)
    write_folder(tmp_path / "two" / "shapes", ["a", "b", "c"], per_class=5)  # more images: other data
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _run(cli, a, "folder:root=shapes", "protonet", tmp_path / "one")
    _run(cli, b, "folder:root=shapes", "knn", tmp_path / "two")
    pairs, err = _pairs(cli, a, b)
    assert len(pairs) == 1  # still shown, under the warning
    assert "'folder:root=shapes [pixels:size=8]' come from different data" in err


def test_results_without_fingerprints_still_load_and_compare(cli, tmp_path: Path) -> None:
    """Files written before fingerprints were recorded: no attribute, no warning, pairs as before."""
    write_mini_csv(tmp_path / "data" / "mini-imagenet")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _run(cli, a, "mini-imagenet", "protonet", tmp_path / "data")
    _run(cli, b, "mini-imagenet", "knn", tmp_path / "data")
    with h5py.File(a, "r+") as file:
        for group in file["groups"].values():
            del group.attrs["data_fingerprint"]
    assert load(a)["data_fingerprint"].isna().all()
    pairs, err = _pairs(cli, a, b)
    assert len(pairs) == 1 and "different data" not in err
