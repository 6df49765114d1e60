"""Image suites end to end: data root, encoders, the feature cache (reuse, staleness, corruption) and bad images."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from layouts_fine_grained import write_folder
from layouts_imagenet import MINI, write_mini_csv

from gpicl_bench import checkpoints, features
from gpicl_bench.features import FeatureSettings
from gpicl_bench.results import load
from gpicl_bench.suites import open_suite

EPISODE_ARGS = ("--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "20", "--quiet")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_mini_csv(root / "mini-imagenet")
    return root


def _refuse(*args: object, **kwargs: object) -> None:
    """Stands in for image encoding where features must come from the cache."""
    raise AssertionError("images were encoded again")


def _run(cli, tmp_path: Path, data_root: Path, name: str, *extra: str):
    out = tmp_path / f"{name}.h5"
    args = ("run", "--suite", "mini-imagenet", "--data-root", data_root, "--learner", "protonet", "--out", out)
    return cli(*args, *EPISODE_ARGS, *extra), out


def test_run_on_an_image_suite_classifies_by_content(cli, tmp_path: Path, data_root: Path) -> None:
    result, out = _run(cli, tmp_path, data_root, "first", "--encoder", "pixels:size=16")
    assert result.code == 0, result.err
    rows = load(out)
    assert set(rows["suite"]) == {"mini-imagenet [pixels:size=16]"}
    assert rows["accuracy"].mean() == 1.0  # every class has its own colour


def test_second_run_reuses_the_cache(cli, tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(cli, tmp_path, data_root, "first")[0].code == 0
    entries = sorted(Path(os.environ["GPICL_BENCH_CACHE"]).glob("*.h5"))
    assert len(entries) == 1 and "mini-imagenet" in entries[0].name
    monkeypatch.setattr(features, "extract", _refuse)
    second, out = _run(cli, tmp_path, data_root, "second")
    assert second.code == 0, second.err
    assert load(out)["accuracy"].mean() == 1.0


def test_a_different_encoder_or_changed_data_is_a_new_entry(cli, tmp_path: Path, data_root: Path) -> None:
    suite = open_suite("mini-imagenet", FeatureSettings(data_root=str(data_root)))
    other_encoder = open_suite("mini-imagenet", FeatureSettings(encoder="pixels:size=8", data_root=str(data_root)))
    before = suite.suite.cache_path("test")
    assert other_encoder.suite.cache_path("test") != before
    index = data_root / "mini-imagenet" / "test.csv"
    os.utime(index, ns=(1, 1))  # a copy of the same data, made at another time: the same entry
    assert open_suite("mini-imagenet", FeatureSettings(data_root=str(data_root))).suite.cache_path("test") == before
    index.write_text(index.read_text() + "\n")  # the index changed: a different dataset state
    assert open_suite("mini-imagenet", FeatureSettings(data_root=str(data_root))).suite.cache_path("test") != before


@pytest.mark.parametrize("damage", ["garbage", "tampered"])
def test_corrupt_or_stale_entries_are_rebuilt(data_root: Path, damage: str) -> None:
    suite = open_suite("mini-imagenet", FeatureSettings(encoder="pixels:size=8", data_root=str(data_root))).suite
    original = suite.load("test")
    path = suite.cache_path("test")
    if damage == "garbage":
        path.write_bytes(b"\x89HDF\r\n not really")
    else:
        with h5py.File(path, "r+") as file:
            file["features"][0, 0] += 1.0  # the checksum no longer matches
    rebuilt = suite.load("test")
    assert np.array_equal(rebuilt.features.numpy(), original.features.numpy())
    assert features.read_entry(path, suite.cache_key("test")) is not None  # and the rebuilt entry is valid


def test_features_command_fills_the_cache(cli, tmp_path: Path, data_root: Path, monkeypatch) -> None:
    filled = cli("features", "--suite", "mini-imagenet", "--data-root", data_root, "--quiet")
    assert filled.code == 0, filled.err
    for split, names in MINI.items():
        assert f"{split}" in filled.out and str(len(names) * 4) in filled.out
    monkeypatch.setattr(features, "extract", _refuse)
    assert _run(cli, tmp_path, data_root, "cached")[0].code == 0


def test_suites_command_shows_what_it_finds(cli, data_root: Path) -> None:
    shown = cli("suites", "mini-imagenet", "--data-root", data_root)
    assert shown.code == 0, shown.err
    for split, names in MINI.items():
        assert re.search(rf"{split}\W+{len(names)}\W+{len(names) * 4}\W", shown.out), shown.out


def test_data_root_from_the_environment(cli, tmp_path: Path, data_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("GPICL_BENCH_DATA", str(data_root))
    args = ("run", "--suite", "mini-imagenet", "--learner", "knn", "--out", tmp_path / "env.h5", *EPISODE_ARGS)
    assert cli(*args).code == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-root", "pass --data-root DIR"),
        ("empty-dir", "no directory"),
        ("no-csv", "expected layout: images/ with train.csv"),
    ],
)
def test_missing_data_is_one_line_exit_2(cli, tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "data"
    if setup == "no-csv":
        (root / "mini-imagenet").mkdir(parents=True)
    args = ["run", "--suite", "mini-imagenet", "--learner", "protonet", *EPISODE_ARGS, "--out", tmp_path / "x.h5"]
    if setup != "no-root":
        args += ["--data-root", root]
    result = cli(*args)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "x.h5").exists()


def test_a_corrupt_image_is_named_or_skipped_on_request(cli, tmp_path: Path, data_root: Path) -> None:
    broken = sorted((data_root / "mini-imagenet" / "images").glob(f"{MINI['test'][0]}*.jpg"))[0]
    broken.write_bytes(b"not a jpeg")
    failed = cli("features", "--suite", "mini-imagenet", "--data-root", data_root, "--split", "test", "--quiet")
    assert failed.code == 2 and broken.name in failed.err and len(failed.err.strip().splitlines()) == 1
    skipped = cli(
        "features", "--suite", "mini-imagenet", "--data-root", data_root, "--split", "test", "--skip-bad-images"
    )
    assert skipped.code == 0, skipped.err
    assert "skipped 1 unreadable image" in skipped.err
    data = open_suite("mini-imagenet", FeatureSettings(data_root=str(data_root), skip_bad_images=True)).suite
    assert len(data.load("test").labels) == len(MINI["test"]) * 4 - 1


def test_universal_meta_training_on_two_image_sources(cli, tmp_path: Path) -> None:
    """`train` meta-trains on the cached features of several image suites' train splits, classes kept apart."""
    root = tmp_path / "data"
    for name, classes in (("birds", ["a", "b", "c"]), ("planes", ["x", "y", "z", "w"])):
        for split in ("train", "val"):
            write_folder(root / name / split, classes, per_class=8)
    out = tmp_path / "universal"
    result = cli(
        "train", "--source", "folder:root=birds+folder:root=planes", "--data-root", root, "--encoder", "pixels:size=8",
        "--steps", "3", "--d-model", "16", "--layers", "1", "--heads", "2", "--batch-size", "8", "--way", "3",
        "--min-way", "0", "--eval-every", "3", "--eval-episodes", "5", "--eval-shot", "1", "--out", out, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    metadata = checkpoints.read_metadata(out)
    assert metadata["data"]["sources"] == ["folder:root=birds [pixels:size=8]", "folder:root=planes [pixels:size=8]"]
    assert metadata["data"]["classes"] == 7 and metadata["data"]["dim"] == 3 * 8 * 8
    assert metadata["model"]["input_dim"] == 192


def test_an_entry_made_with_other_library_versions_is_rebuilt_with_a_note(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A library upgrade may change the transform or the initialisation: the old features are not reused."""
    suite = open_suite("mini-imagenet", FeatureSettings(encoder="pixels:size=8", data_root=str(data_root))).suite
    suite.load("test")
    assert suite.cache_key("test")["versions"].keys() == {"torch", "pillow"}
    monkeypatch.setattr(features, "library_versions", lambda ref: {"torch": "0.0.1", "pillow": "1.0"})
    encoded = []
    real_extract = features.extract
    monkeypatch.setattr(features, "extract", lambda *args: encoded.append(1) or real_extract(*args))
    with caplog.at_level("WARNING", logger="gpicl_bench"):
        suite.load("test")
    assert encoded == [1] and "stale: versions changed (made with" in caplog.text
    assert features.read_entry(suite.cache_path("test"), suite.cache_key("test")) is not None  # rebuilt in place
