"""The HDF5 results file: round trip, refusal of foreign files, and atomic writes that survive interruption."""

from __future__ import annotations

import re
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


def test_groups_read_back_in_the_order_written_with_shapes_in_numeric_order(tmp_path: Path) -> None:
    """Summaries and tables list suites and learners as the spec gave them (here against name order) and 10 shots
    after 1 and 5 (against text order)."""
    results = ResultsFile.create(tmp_path / "r.h5", {"spec": "{}", "seed": 3})
    for suite in ("mini-imagenet", "cub"):
        for shot in (10, 1, 5):
            for learner in ("protonet", "knn"):
                key = GroupKey(suite, learner, 5, shot, 15)
                results.add_group(key, np.arange(2), np.array([1, 2]), {"split": "test", "seed": 3})
    groups = load(tmp_path / "r.h5")[["suite", "shot", "learner"]].drop_duplicates()
    assert [tuple(row) for row in groups.itertuples(index=False)] == [
        (suite, shot, learner)
        for suite in ("mini-imagenet", "cub")
        for shot in (1, 5, 10)
        for learner in ("protonet", "knn")
    ]


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
    """Ctrl-C in the middle of writing a group: readers see only the earlier group, and resuming removes the
    unfinished one."""
    results = make_file(tmp_path / "r.h5")
    original = h5py.Group.create_dataset

    def interrupted(self, name, *args, **kwargs):
        if name == "correct":
            raise KeyboardInterrupt
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        results.add_group(KEY_B, np.arange(2), np.array([1, 2]), {"split": "test", "seed": 3})
    monkeypatch.undo()
    results.close()
    assert ResultsFile.open(tmp_path / "r.h5").group_keys() == {KEY_A}
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        assert KEY_B.name in handle["groups"]  # there, but not marked complete
    with ResultsFile.resume(tmp_path / "r.h5"):
        pass
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        assert list(handle["groups"]) == [KEY_A.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_groups_are_appended_in_place(tmp_path: Path) -> None:
    """Saving a group writes into the file itself (same inode, earlier groups' bytes untouched), not into a copy
    of the whole file: its cost is the group's size."""
    results = make_file(tmp_path / "r.h5")
    inode = (tmp_path / "r.h5").stat().st_ino
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        offset = handle["groups"][KEY_A.name]["correct"].id.get_offset()
    results.add_group(KEY_B, np.arange(2), np.array([1, 2]), {"split": "test", "seed": 3})
    assert (tmp_path / "r.h5").stat().st_ino == inode
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        assert handle["groups"][KEY_A.name]["correct"].id.get_offset() == offset


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    """A file being written is refused to a second writer or resumer, and free again once its writer closes it."""
    results = make_file(tmp_path / "r.h5")
    with pytest.raises(UserError, match="being written by another gpicl-bench process"):
        ResultsFile.resume(tmp_path / "r.h5")
    with pytest.raises(UserError, match="already exists"):
        ResultsFile.create(tmp_path / "r.h5", {})
    results.close()
    with ResultsFile.resume(tmp_path / "r.h5") as resumed:
        resumed.add_group(KEY_B, np.arange(2), np.array([1, 2]), {"split": "test", "seed": 3})
    assert ResultsFile.open(tmp_path / "r.h5").group_keys() == {KEY_A, KEY_B}
    with pytest.raises(ValueError, match="open for reading"):
        ResultsFile.open(tmp_path / "r.h5").add_group(KEY_B, np.arange(2), np.array([1, 2]), {})


def test_version_1_files_read_and_resume(tmp_path: Path) -> None:
    """Files of format 1 (no completion marks: every group was written whole) still load, and resuming one keeps
    its groups."""
    path = tmp_path / "old.h5"
    make_file(path).close()
    with h5py.File(path, "r+") as handle:
        handle.attrs["format_version"] = 1
        del handle["groups"][KEY_A.name].attrs["complete"]
    assert set(load(path)["learner"]) == {"knn"}
    with ResultsFile.resume(path):
        pass
    assert ResultsFile.open(path).group_keys() == {KEY_A}
    assert ResultsFile.open(path).attrs()["format_version"] == FORMAT_VERSION


def _set_attr(name: str, value: object):
    def damage(group: h5py.Group) -> None:
        group.attrs[name] = value

    return damage


def _replace_dataset(name: str, values: np.ndarray):
    def damage(group: h5py.Group) -> None:
        del group[name]
        group.create_dataset(name, data=values)

    return damage


def _drop_attr(group: h5py.Group) -> None:
    del group.attrs["learner"]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_drop_attr, "attribute 'learner' is missing"),
        (_set_attr("way", "five"), "attribute 'way' is 'five', not a whole number"),
        (_set_attr("shot", 0), "attribute 'shot' is 0, not a positive count"),
        (_set_attr("episodes_per_second", "fast"), "attribute 'episodes_per_second' is 'fast', not a number"),
        (
            _replace_dataset("correct", np.arange(3)),
            "datasets episode, correct, accuracy have different lengths [3, 4]",
        ),
        (
            _replace_dataset("accuracy", np.array([b"a", b"b", b"c", b"d"])),
            "dataset 'accuracy' is missing or not a list of numbers",
        ),
        (lambda group: group.__delitem__("episode"), "dataset 'episode' is missing"),
    ],
)
def test_every_reader_names_a_damaged_group(tmp_path: Path, damage, problem: str) -> None:
    path = tmp_path / "r.h5"
    make_file(path).close()
    with h5py.File(path, "r+") as handle:
        damage(handle["groups"][KEY_A.name])
    readers = [load, lambda p: ResultsFile.open(p).group_keys(), results_module.load_curves]
    for read in readers:
        with pytest.raises(UserError, match=re.escape(f"damaged group '{KEY_A.name}': {problem}")):
            read(path)


def test_group_names_escape_slashes() -> None:
    """HDF5 treats '/' as a path separator: group names must never contain one."""
    assert "/" not in KEY_B.name
    assert results_module.GroupKey("a%2Fb", "x", 2, 1, 1).name != results_module.GroupKey("a/b", "x", 2, 1, 1).name
