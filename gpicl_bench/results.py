"""The HDF5 results file: one group per (suite, learner, way, shot, query), appended in place by one locked writer.

Schema (format ``gpicl-bench-results``, version 2)::

    /                      attrs: format, format_version, name, spec (JSON), seed, split, package_version,
                                  git_commit, torch_version, python_version, created, command
    /groups/<group name>   attrs: suite, learner, way, shot, query, split, seed, episodes, device, device_name,
                                  batch_size, seconds, episodes_per_second, started, finished,
                                  learner_details (JSON: e.g. a checkpoint and how it was trained),
                                  data_fingerprint (the suite's data files, wherever they live; absent in older files)
                                  complete (set last, once the group's data are on disk)
        episode   int64 [E]    episode numbers (the sampler's counter: same number → same episode)
        correct   int32 [E]    correctly classified queries per episode (out of way × query)
        accuracy  float64 [E]  correct / (way × query)
        position_accuracy  float64 [T]  (sequence learners) accuracy at position t of the sequence view of the
                                        episodes — support, then queries in a seeded order — after t examples

Group names are readable but not parsed: the attributes are the source of truth. A writer holds an exclusive lock
(:mod:`gpicl_bench.locking`) for as long as it writes, and appends each finished group in place — its data, a flush,
then the ``complete`` mark and a second flush — so saving a group costs the group's size, not the file's. Readers
see only complete groups; a group a kill or a full disk interrupted is removed when the file is resumed. In version 1
files (written whole by copy-and-rename) every group is complete. Every reader checks each group's schema and names a
damaged one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from gpicl_bench import atomic
from gpicl_bench.errors import UserError
from gpicl_bench.locking import ExclusiveLock

FORMAT_NAME = "gpicl-bench-results"
FORMAT_VERSION = 2
KEY_COLUMNS = ["suite", "learner", "way", "shot", "query"]
GROUP_COLUMNS = [*KEY_COLUMNS, "split", "seed", "device", "episodes_per_second", "data_fingerprint"]
EPISODE_COLUMNS = ["episode", "correct", "accuracy"]
COMPLETE = "complete"
RESERVE_BYTES = 1 << 20  # room claimed for a group's metadata, beyond twice its data
# What every group must hold, and of which kind; other attributes are optional.
REQUIRED_ATTRS: dict[str, tuple[type, ...]] = {
    "suite": (str,),
    "learner": (str,),
    "way": (int,),
    "shot": (int,),
    "query": (int,),
    "split": (str,),
    "seed": (int,),
}
OPTIONAL_ATTRS: dict[str, tuple[type, ...]] = {"device": (str,), "episodes_per_second": (int, float)}
DATASET_KINDS = {"episode": "iu", "correct": "iu", "accuracy": "f", "position_accuracy": "f"}


@dataclass(frozen=True, order=True)
class GroupKey:
    """What one group of results is about: a suite label, a learner label and an episode shape."""

    suite: str
    learner: str
    way: int
    shot: int
    query: int

    @property
    def name(self) -> str:
        readable = f"{self.suite} | {self.learner} | {self.way}w{self.shot}s{self.query}q"
        return readable.replace("%", "%25").replace("/", "%2F")

    def attrs(self) -> dict[str, Any]:
        return {"suite": self.suite, "learner": self.learner, "way": self.way, "shot": self.shot, "query": self.query}


def _attr(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value


def _read_attrs(node: h5py.HLObject) -> dict[str, Any]:
    return {k: _attr(v) for k, v in node.attrs.items()}


def _schema_problem(group: h5py.Group, attrs: dict[str, Any]) -> str | None:
    """What is wrong with a group (a missing or mistyped attribute, a missing, mistyped or short dataset), or None."""
    for name, kinds in {**REQUIRED_ATTRS, **OPTIONAL_ATTRS}.items():
        if name not in attrs:
            if name in REQUIRED_ATTRS:
                return f"attribute {name!r} is missing"
            continue
        value = attrs[name]
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"attribute {name!r} is {value!r}, not {'a number' if float in kinds else 'a ' + _noun(kinds[0])}"
    for name in ("way", "shot", "query"):
        if attrs[name] < 1:
            return f"attribute {name!r} is {attrs[name]}, not a positive count"
    lengths = set()
    for name, kinds in DATASET_KINDS.items():
        node = group.get(name)
        if node is None and name == "position_accuracy":
            continue
        if not isinstance(node, h5py.Dataset) or node.ndim != 1 or node.dtype.kind not in kinds:
            return f"dataset {name!r} is missing or not a list of {'integers' if kinds == 'iu' else 'numbers'}"
        if name != "position_accuracy":
            lengths.add(node.shape[0])
    if len(lengths) != 1:
        return f"datasets {', '.join(EPISODE_COLUMNS)} have different lengths {sorted(lengths)}"
    return None


def _noun(kind: type) -> str:
    return {str: "text", int: "whole number"}.get(kind, kind.__name__)


class ResultsFile:
    """A gpicl-bench results file on disk: read by anyone, written by the one process that holds its lock."""

    def __init__(self, path: Path, lock: ExclusiveLock | None = None) -> None:
        self.path = Path(path)
        self._lock = lock

    @staticmethod
    def check_new(path: Path) -> None:
        """Refuse, before any work, a new results file that exists already or cannot be written."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} already exists; use --resume {path} to complete it, or choose another --out")
        atomic.check_writable(path, "results file")

    @classmethod
    def create(cls, path: Path, attrs: dict[str, Any]) -> ResultsFile:
        """A new file holding only the run's attributes, locked for this process; never overwrites a file."""
        path = Path(path)
        cls.check_new(path)
        lock = ExclusiveLock(path).acquire()
        try:
            cls.check_new(path)  # another writer may have created it before we took the lock
            atomic.clean_stale_temporaries(path)
            with atomic.replacing(path) as temporary, h5py.File(temporary, "w") as handle:
                handle.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **attrs})
                handle.create_group("groups", track_order=True)  # iterated in the order written: the spec's
        except BaseException:
            lock.release()
            raise
        return cls(path, lock)

    @classmethod
    def open(cls, path: Path) -> ResultsFile:
        """An existing results file, checked to be one; anything else is a one-line user error."""
        path = atomic.existing_file(path, "results file")
        try:
            with _reading(path) as handle:
                kind = _attr(handle.attrs.get("format", ""))
                version = _attr(handle.attrs.get("format_version", -1))
                has_groups = isinstance(handle.get("groups"), h5py.Group)
        except OSError:
            raise UserError(f"{path} is not a readable HDF5 file (corrupt, truncated or another format)") from None
        if kind != FORMAT_NAME or not has_groups:
            raise UserError(f"{path} is an HDF5 file but not a gpicl-bench results file")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise UserError(f"{path} has results format {version}; this gpicl-bench reads up to {FORMAT_VERSION}")
        return cls(path)

    @classmethod
    def resume(cls, path: Path) -> ResultsFile:
        """An existing results file locked for appending: temporaries and groups that an interrupted writer left
        unfinished are removed, and a version 1 file is marked as version 2 (all its groups are complete)."""
        results = cls.open(path)
        lock = ExclusiveLock(results.path).acquire()
        try:
            atomic.clean_stale_temporaries(results.path)
            with h5py.File(results.path, "r+") as handle:
                groups = handle["groups"]
                if _attr(handle.attrs["format_version"]) < FORMAT_VERSION:
                    for group in groups.values():
                        group.attrs[COMPLETE] = True
                    handle.attrs["format_version"] = FORMAT_VERSION
                for name in [n for n, group in groups.items() if not group.attrs.get(COMPLETE, False)]:
                    del groups[name]
        except OSError as error:
            lock.release()
            raise atomic.write_error(results.path, error) from None
        except BaseException:
            lock.release()
            raise
        return cls(results.path, lock)

    def close(self) -> None:
        """Release the writer's lock (a reader holds none)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attrs(self) -> dict[str, Any]:
        with _reading(self.path) as handle:
            return _read_attrs(handle)

    def groups(self) -> Iterator[tuple[dict[str, Any], h5py.Group]]:
        """The attributes and HDF5 group of every complete group, schema checked; valid while iterating."""
        with _reading(self.path) as handle:
            every_group_complete = _attr(handle.attrs.get("format_version", 1)) < 2
            for name, group in handle["groups"].items():
                if not isinstance(group, h5py.Group):
                    raise UserError(f"{self.path} is damaged: {name!r} under /groups is not a group")
                attrs = _read_attrs(group)
                if not (every_group_complete or attrs.get(COMPLETE, False)):
                    continue  # an interrupted write: not a result
                problem = _schema_problem(group, attrs)
                if problem:
                    raise UserError(f"{self.path} has a damaged group {name!r}: {problem}")
                yield attrs, group

    def group_keys(self) -> set[GroupKey]:
        return {GroupKey(**{k: attrs[k] for k in KEY_COLUMNS}) for attrs, _ in self.groups()}

    def add_group(
        self,
        key: GroupKey,
        episodes: np.ndarray,
        correct: np.ndarray,
        attrs: dict[str, Any],
        curves: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Append one finished group, with optional curves (e.g. ``position_accuracy``); it counts once complete."""
        if self._lock is None:
            raise ValueError(f"{self.path} is open for reading; use ResultsFile.create or resume to add groups")
        total = key.way * key.query
        try:
            _reserve(self.path, RESERVE_BYTES + 2 * sum(np.asarray(a).nbytes for a in (episodes, correct, correct)))
            with h5py.File(self.path, "r+") as handle:
                groups = handle["groups"]
                if key.name in groups:  # a leftover of an interrupted write of this group
                    del groups[key.name]
                group = groups.create_group(key.name)
                group.attrs.update({**key.attrs(), **attrs})
                group.create_dataset("episode", data=np.asarray(episodes, dtype=np.int64))
                group.create_dataset("correct", data=np.asarray(correct, dtype=np.int32))
                group.create_dataset("accuracy", data=np.asarray(correct, dtype=np.float64) / total)
                for name, values in (curves or {}).items():
                    group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
                handle.flush()
                os.fsync(handle.id.get_vfd_handle())
                group.attrs[COMPLETE] = True
        except OSError as error:
            raise UserError(
                f"cannot save group {key.name!r} to {self.path}: {error.strerror or error}; the groups saved before "
                f"are kept, complete them with: gpicl-bench run --resume {self.path}"
            ) from None

    def frame(self) -> pd.DataFrame:
        """One row per episode of every complete group, with the group's attributes as columns, in reading order:
        suites, then ways, shots and queries in numeric order, then learners; suites and learners in the order they
        were written (the spec's; name order in files written before groups kept their order)."""
        read = []
        written: dict[str, dict[Any, int]] = {"suite": {}, "learner": {}}  # each one's first position in the file
        for attrs, group in self.groups():
            data = {name: group[name][()] for name in EPISODE_COLUMNS}
            read.append((attrs, pd.DataFrame({**{c: attrs.get(c) for c in GROUP_COLUMNS}, **data})))
            for column, positions in written.items():
                positions.setdefault(attrs[column], len(positions))
        if not read:
            return pd.DataFrame(columns=[*GROUP_COLUMNS, *EPISODE_COLUMNS])

        def reading_order(item: tuple[dict[str, Any], pd.DataFrame]) -> tuple[int, ...]:
            attrs = item[0]
            return (
                written["suite"][attrs["suite"]],
                attrs["way"],
                attrs["shot"],
                attrs["query"],
                written["learner"][attrs["learner"]],
            )

        return pd.concat([frame for _, frame in sorted(read, key=reading_order)], ignore_index=True)


def _reserve(path: Path, size: int) -> None:
    """Claim ``size`` bytes of disk beyond the end of the file before HDF5 writes there, so that a full disk is met
    here, with the file untouched, rather than halfway through HDF5's own writes; HDF5 cuts what it leaves unused
    when it closes the file."""
    with open(path, "rb+") as handle:
        end = os.fstat(handle.fileno()).st_size
        try:
            os.posix_fallocate(handle.fileno(), end, size)
        except OSError:
            handle.truncate(end)
            raise


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[h5py.File]:
    """The file opened read-only without HDF5's own lock (a writer holds ours); an unreadable file is one line."""
    try:
        handle = h5py.File(path, "r", locking=False)
    except OSError:
        raise UserError(f"{path} is not a readable HDF5 file (corrupt, truncated or another format)") from None
    try:
        with handle:
            yield handle
    except (OSError, KeyError) as error:
        raise UserError(f"{path} is damaged: {error}") from None


def load_curves(path: str | os.PathLike[str], name: str = "position_accuracy") -> pd.DataFrame:
    """A per-group curve as tidy rows: the group's key columns, ``position`` (examples seen before) and ``value``."""
    frames = []
    for attrs, group in ResultsFile.open(Path(path)).groups():
        if name in group:
            values = group[name][()]
            frames.append(
                pd.DataFrame(
                    {**{c: attrs.get(c) for c in GROUP_COLUMNS}, "position": np.arange(len(values)), "value": values}
                )
            )
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*GROUP_COLUMNS, "position", "value"])
    )


def load(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Per-episode results of a file as a tidy DataFrame: suite, learner, way, shot, query, split, seed, device,
    episodes_per_second, episode, correct, accuracy."""
    return ResultsFile.open(Path(path)).frame()
