"""The HDF5 results file: one group per (suite, learner, way, shot, query), written atomically.

Schema (format ``gpicl-bench-results``, version 1)::

    /                      attrs: format, format_version, name, spec (JSON), seed, split, package_version,
                                  git_commit, torch_version, python_version, created, command
    /groups/<group name>   attrs: suite, learner, way, shot, query, split, seed, episodes, device, device_name,
                                  batch_size, seconds, episodes_per_second, started, finished,
                                  learner_details (JSON: e.g. a checkpoint and how it was trained),
                                  data_fingerprint (the suite's data files, wherever they live; absent in older files)
        episode   int64 [E]    episode numbers (the sampler's counter: same number → same episode)
        correct   int32 [E]    correctly classified queries per episode (out of way × query)
        accuracy  float64 [E]  correct / (way × query)
        position_accuracy  float64 [T]  (sequence learners) accuracy at position t of the sequence view of the
                                        episodes — support, then queries in a seeded order — after t examples

Group names are readable but not parsed: the attributes are the source of truth. Every change goes to a copy of the
file that replaces the original in one ``os.replace``, so an interrupted run leaves either the old file or the new
one, never a broken one, and keeps every group finished before the interruption.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from gpicl_bench.errors import UserError

FORMAT_NAME = "gpicl-bench-results"
FORMAT_VERSION = 1
KEY_COLUMNS = ["suite", "learner", "way", "shot", "query"]
GROUP_COLUMNS = [*KEY_COLUMNS, "split", "seed", "device", "episodes_per_second", "data_fingerprint"]
EPISODE_COLUMNS = ["episode", "correct", "accuracy"]


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


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary copy of ``path`` (or a new file) that replaces ``path`` atomically if the block succeeds."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.exists():
            shutil.copyfile(path, temporary)
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class ResultsFile:
    """A gpicl-bench results file on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, attrs: dict[str, Any]) -> ResultsFile:
        """A new file holding only the run's attributes; refuses to overwrite an existing file."""
        path = Path(path)
        if path.exists():
            raise UserError(f"{path} already exists; use --resume {path} to complete it, or choose another --out")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _replacing(path) as temporary, h5py.File(temporary, "w") as handle:
                handle.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **attrs})
                handle.create_group("groups")
        except OSError as error:
            raise UserError(f"cannot write results to {path}: {error.strerror or error}") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> ResultsFile:
        """An existing results file, checked to be one; anything else is a one-line user error."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"no such results file: {path}")
        if path.is_dir():
            raise UserError(f"{path} is a directory, not a results file")
        try:
            with h5py.File(path, "r") as handle:
                kind = _attr(handle.attrs.get("format", ""))
                version = _attr(handle.attrs.get("format_version", -1))
                has_groups = isinstance(handle.get("groups"), h5py.Group)
        except OSError:
            raise UserError(f"{path} is not a readable HDF5 file (corrupt, truncated or another format)") from None
        if kind != FORMAT_NAME or not has_groups:
            raise UserError(f"{path} is an HDF5 file but not a gpicl-bench results file")
        if version > FORMAT_VERSION:
            raise UserError(f"{path} has results format {version}; this gpicl-bench reads up to {FORMAT_VERSION}")
        return cls(path)

    def attrs(self) -> dict[str, Any]:
        with h5py.File(self.path, "r") as handle:
            return _read_attrs(handle)

    def group_keys(self) -> set[GroupKey]:
        with h5py.File(self.path, "r") as handle:
            return {GroupKey(**{k: _read_attrs(g)[k] for k in KEY_COLUMNS}) for g in handle["groups"].values()}

    def add_group(
        self,
        key: GroupKey,
        episodes: np.ndarray,
        correct: np.ndarray,
        attrs: dict[str, Any],
        curves: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add one finished group atomically, with optional curves (e.g. ``position_accuracy``)."""
        total = key.way * key.query
        with _replacing(self.path) as temporary, h5py.File(temporary, "r+") as handle:
            group = handle["groups"].create_group(key.name)
            group.attrs.update({**key.attrs(), **attrs})
            group.create_dataset("episode", data=np.asarray(episodes, dtype=np.int64))
            group.create_dataset("correct", data=np.asarray(correct, dtype=np.int32))
            group.create_dataset("accuracy", data=np.asarray(correct, dtype=np.float64) / total)
            for name, values in (curves or {}).items():
                group.create_dataset(name, data=np.asarray(values, dtype=np.float64))

    def frame(self) -> pd.DataFrame:
        """One row per episode of every group, with the group's attributes as columns."""
        frames = []
        try:
            with h5py.File(self.path, "r") as handle:
                for group in handle["groups"].values():
                    attrs = _read_attrs(group)
                    data = {name: group[name][()] for name in EPISODE_COLUMNS}
                    frames.append(pd.DataFrame({**{c: attrs.get(c) for c in GROUP_COLUMNS}, **data}))
        except (OSError, KeyError) as error:
            raise UserError(f"{self.path} is damaged: {error}") from None
        if not frames:
            return pd.DataFrame(columns=[*GROUP_COLUMNS, *EPISODE_COLUMNS])
        return pd.concat(frames, ignore_index=True)


def load_curves(path: str | os.PathLike[str], name: str = "position_accuracy") -> pd.DataFrame:
    """A per-group curve as tidy rows: the group's key columns, ``position`` (examples seen before) and ``value``."""
    results = ResultsFile.open(Path(path))
    frames = []
    with h5py.File(results.path, "r") as handle:
        for group in handle["groups"].values():
            if name in group:
                attrs = _read_attrs(group)
                values = group[name][()]
                frames.append(
                    pd.DataFrame(
                        {
                            **{c: attrs.get(c) for c in GROUP_COLUMNS},
                            "position": np.arange(len(values)),
                            "value": values,
                        }
                    )
                )
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*GROUP_COLUMNS, "position", "value"])
    )


def load(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Per-episode results of a file as a tidy DataFrame: suite, learner, way, shot, query, split, seed, device,
    episodes_per_second, episode, correct, accuracy."""
    return ResultsFile.open(Path(path)).frame()
