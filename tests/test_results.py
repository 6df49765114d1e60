"""The HDF5 results file: round trip, refusal of foreign files, and atomic writes that survive interruption."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gpicl_bench import results as results_module
from gpicl_bench.errors import UserError
from gpicl_bench.results import FORMAT_VERSION, GroupKey, ResultsFile, load

KEY_A = GroupKey("digits", "knn", 5, 1, 15)
KEY_B = GroupKey("digits:project", "folder/with/slash", 5, 5, 15)


def make_file(path: Path) -> ResultsFile:
    results = ResultsFile.create(path, {"spec": "{}", "seed": 3})
    results.add_group(KEY_A, np.arange(4), np.array([75, 0, 30, 60]), {"split": "test", "seed": 3})
    return results


def test_round_trip(tmp_path: Path) -> None:
    """Groups come back with their keys, episodes, counts and accuracies = correct / (way·query)."""
    results = make_file(tmp_path / "r.h5")
    results.add_group(KEY_B, np.arange(2), np.array([1, 2]), {"split": "test", "seed": 3})
    assert results.group_keys() == {KEY_A, KEY_B}
    frame = load(tmp_path / "r.h5")
    knn = frame[frame["learner"] == "knn"].sort_values("episode")
    assert knn["correct"].tolist() == [75, 0, 30, 60]
    assert knn["accuracy"].tolist() == pytest.approx([1.0, 0.0, 0.4, 0.8])
    assert set(frame["learner"]) == {"knn", "folder/with/slash"}
    assert results.attrs()["seed"] == 3


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    make_file(tmp_path / "r.h5")
    with pytest.raises(UserError, match="already exists"):
        ResultsFile.create(tmp_path / "r.h5", {})


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such results file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_text("suite,learner\n"), "not a readable HDF5 file"),
        (lambda p: h5py.File(p, "w").close(), "not a gpicl-bench results file"),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "x.h5"
    setup(path)
    with pytest.raises(UserError, match=message):
        ResultsFile.open(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    """A file cut short (a crash of some other writer, a partial copy) is reported, not read."""
    path = tmp_path / "r.h5"
    make_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        load(path)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    make_file(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(UserError, match="format"):
        ResultsFile.open(path)


def test_interrupted_write_keeps_previous_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of writing a group leaves the earlier file intact and no temporary file behind."""
    results = make_file(tmp_path / "r.h5")
    before = (tmp_path / "r.h5").read_bytes()
    original = h5py.Group.create_dataset

    def interrupted(self, name, *args, **kwargs):
        if name == "correct":
            raise KeyboardInterrupt
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        results.add_group(KEY_B, np.arange(2), np.array([1, 2]), {})
    monkeypatch.undo()
    assert (tmp_path / "r.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
    assert ResultsFile.open(tmp_path / "r.h5").group_keys() == {KEY_A}


def test_group_names_escape_slashes() -> None:
    """HDF5 treats '/' as a path separator: group names must never contain one."""
    assert "/" not in KEY_B.name
    assert results_module.GroupKey("a%2Fb", "x", 2, 1, 1).name != results_module.GroupKey("a/b", "x", 2, 1, 1).name
