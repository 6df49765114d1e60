"""Precomputed features as a suite: a researcher's own embeddings, ``features:path=FILE``.

The file holds, under the same names in every format:

- ``features``: [N, D] numbers (any float or integer type; read as float32), every one finite;
- ``labels``: [N] integers or strings, the class of each row;
- optionally ``class_names``: [C] strings naming integer labels 0..C−1 (else a label is its own name);
- optionally the splits, in one of two ways: ``split``, [N] strings naming each row's split (e.g. ``train``,
  ``val``, ``test``); or ``<split>_classes`` (e.g. ``train_classes``, ``test_classes``): the labels of each split's
  classes, each class in one split only. Without either, every row is in the split ``test``.

Formats, by extension: ``.npz`` (``numpy.savez``; read without unpickling, so strings must be numpy string arrays,
not object arrays), ``.h5``/``.hdf5`` (datasets at the file's root), ``.pt``/``.pth`` (``torch.save`` of a dict of
tensors and lists of strings or integers, read with ``torch.load(weights_only=True)``, which unpickles nothing
else), and ``.parquet`` (needs pyarrow: one row per example, columns ``features`` — a list of numbers — ``labels``
and optionally ``split``). Everything is checked when the suite is opened, and a malformed file is one line naming
the file and what is wrong.

A split's classes are numbered 0..k−1 in sorted order of their labels. The suite is labelled by the file's name
alone (``features:path=clip.npz``) and identified by its content's fingerprint, so results travel between machines.
"""

from __future__ import annotations

import functools
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpicl_bench.errors import UserError
from gpicl_bench.suites.base import SplitData
from gpicl_bench.suites.images import fingerprint_files

DEFAULT_SPLIT = "test"
EXTENSIONS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".pt": "torch", ".pth": "torch", ".parquet": "parquet"}
LAYOUT = "features [N, D], labels [N], optionally split [N] or <split>_classes, and class_names"


@dataclass(frozen=True)
class _Table:
    """A validated file: float32 features, a class index per row, class names, and the rows of each split."""

    features: np.ndarray
    classes: np.ndarray  # [N] index into names
    names: tuple[str, ...]
    splits: dict[str, np.ndarray]  # split name → sorted row numbers


class PrecomputedFeatures:
    """A file of embeddings with labels and splits (options: path)."""

    splits: tuple[str, ...] = ()  # the file's own, once opened

    def __init__(self, *, path: str = "") -> None:
        if not path:
            raise UserError("suite features needs path=FILE, a .npz, .h5, .pt or .parquet file of features and labels")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise UserError(f"no features file {self.path}")
        if self.path.suffix.lower() not in EXTENSIONS:
            raise UserError(
                f"features file {self.path}: unknown extension {self.path.suffix!r}; use .npz, .h5 (.hdf5), .pt (.pth) "
                "or .parquet"
            )
        stat = self.path.stat()
        self._table = _read(self.path.resolve(), stat.st_size, stat.st_mtime_ns)
        self.splits = tuple(self._table.splits)

    def fingerprint(self) -> str:
        """The file's digest (:func:`fingerprint_files`): its name, size and content, wherever it lives."""
        return fingerprint_files(self.path.parent, [self.path])

    def load(self, split: str) -> SplitData:
        table = self._table
        if split not in table.splits:
            raise UserError(f"features file {self.path} has no split {split!r}; splits: {', '.join(self.splits)}")
        rows = table.splits[split]
        present, classes = np.unique(table.classes[rows], return_inverse=True)
        names = tuple(table.names[i] for i in present)
        return SplitData(torch.from_numpy(table.features[rows]), torch.from_numpy(classes.astype(np.int64)), names)


@functools.cache
def _read(path: Path, size: int, modified: int) -> _Table:
    """The file read and checked once per version of it (size and modification time are the cache key)."""
    del size, modified
    return _validate(path, _arrays(path))


def _arrays(path: Path) -> dict[str, Any]:
    """The file's named arrays, read without running any code from it."""
    kind = EXTENSIONS[path.suffix.lower()]
    try:
        if kind == "npz":
            if not zipfile.is_zipfile(path):
                raise UserError(f"features file {path} is not a .npz archive (numpy.savez writes one)")
            with np.load(path, allow_pickle=False) as file:
                return {name: file[name] for name in file.files}
        if kind == "hdf5":
            return _hdf5_arrays(path)
        if kind == "torch":
            return _torch_arrays(path)
        return _parquet_arrays(path)
    except UserError:
        raise
    except ValueError as error:
        if "pickle" in str(error):  # numpy refuses object arrays without unpickling
            raise UserError(
                f"features file {path} holds object arrays, which cannot be read without unpickling; save strings as "
                "numpy string arrays (np.array(names, dtype=str))"
            ) from None
        raise UserError(f"cannot read features file {path}: {_first_line(error)}") from None
    except (OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read features file {path}: {_first_line(error)}") from None


def _hdf5_arrays(path: Path) -> dict[str, Any]:
    import h5py

    arrays: dict[str, Any] = {}
    with h5py.File(path, "r") as file:
        for name, item in file.items():
            if isinstance(item, h5py.Dataset):
                arrays[name] = item.asstr()[()] if h5py.check_string_dtype(item.dtype) else item[()]
    return arrays


def _torch_arrays(path: Path) -> dict[str, Any]:
    import pickle

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise UserError(
                f"features file {path} holds a {refused.group(1)}, which only unpickling could read (it is never "
                "unpickled); save a dict of tensors and lists of strings or numbers"
            ) from None
        raise UserError(f"cannot read features file {path}: not a file that torch.save wrote") from None
    if not isinstance(content, dict):
        raise UserError(f"features file {path} holds a {type(content).__name__}, not a dict of named arrays")
    return {str(name): value.numpy() if isinstance(value, torch.Tensor) else value for name, value in content.items()}


def _parquet_arrays(path: Path) -> dict[str, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as parquet
    except ImportError:
        raise UserError(f"reading {path} needs pyarrow: pip install 'gpicl-bench[parquet]'") from None
    try:
        table = parquet.read_table(path)
    except pa.ArrowException as error:
        raise UserError(f"cannot read features file {path}: {_first_line(error)}") from None
    arrays: dict[str, Any] = {name: table.column(name).to_pylist() for name in table.column_names if name != "features"}
    if "features" in table.column_names:
        column = table.column("features").combine_chunks()
        kind = column.type
        if column.null_count or not (
            pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
        ):
            raise UserError(f"features file {path}: column 'features' must hold a list of numbers in every row")
        lengths = np.asarray(pc.list_value_length(column))
        if len(lengths) and (lengths != lengths[0]).any():
            raise UserError(f"features file {path}: rows of column 'features' have different lengths")
        flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
        arrays["features"] = flat.reshape(len(lengths), int(lengths[0]) if len(lengths) else 0)
    return arrays


def _validate(path: Path, arrays: dict[str, Any]) -> _Table:
    """The arrays checked against the layout, in the user's terms."""
    where = f"features file {path}"
    for key in ("features", "labels"):
        if key not in arrays:
            raise UserError(
                f"{where} has no {key!r} (it has: {', '.join(sorted(arrays)) or 'nothing'}); expected {LAYOUT}"
            )
    features, labels = np.asarray(arrays["features"]), np.asarray(arrays["labels"])
    if features.ndim != 2:
        raise UserError(f"{where}: features must be a 2-D array [examples, dimensions], got shape {features.shape}")
    if features.dtype.kind not in "fiu":
        raise UserError(f"{where}: features must be numbers, got {features.dtype}")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise UserError(f"{where}: features hold no examples (shape {features.shape})")
    with np.errstate(over="ignore"):  # numbers beyond float32's range become infinite, and are refused below
        features = np.ascontiguousarray(features, dtype=np.float32)
    bad = ~np.isfinite(features).all(1)
    if bad.any():
        raise UserError(
            f"{where}: {int(bad.sum())} feature rows hold NaN or infinite values (the first is row "
            f"{int(np.flatnonzero(bad)[0])}); features must be finite numbers (float32)"
        )
    if labels.ndim != 1 or len(labels) != len(features):
        raise UserError(
            f"{where}: {len(features)} feature rows but labels of shape {labels.shape}; need [{len(features)}]"
        )
    values, classes = np.unique(_labels(labels, where), return_inverse=True)
    names = _class_names(arrays.get("class_names"), values, where)
    return _Table(features, classes.reshape(-1), names, _splits(arrays, values, classes.reshape(-1), where))


def _labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind in "USO" and all(isinstance(v, str | bytes) for v in labels.tolist()):
        return np.array([_text(v) for v in labels.tolist()], dtype=str)
    raise UserError(f"{where}: labels must be integers or strings, got {labels.dtype}")


def _class_names(names: Any, values: np.ndarray, where: str) -> tuple[str, ...]:
    if names is None:
        return tuple(str(v) for v in values.tolist())
    names = np.asarray(names)
    if values.dtype.kind not in "iu":
        raise UserError(f"{where}: class_names name integer labels, but the labels are strings already")
    if names.ndim != 1 or names.dtype.kind not in "USO" or not all(isinstance(n, str | bytes) for n in names.tolist()):
        raise UserError(f"{where}: class_names must be a list of strings, got {names.dtype} of shape {names.shape}")
    if values.min() < 0 or values.max() >= len(names):
        raise UserError(
            f"{where}: labels run from {values.min()} to {values.max()} but class_names name 0..{len(names) - 1}"
        )
    return tuple(_text(names[v]) for v in values.tolist())


def _splits(arrays: dict[str, Any], values: np.ndarray, classes: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """Rows of each split, from the split column, the class lists, or neither (one ``test`` split)."""
    lists = {
        key[: -len("_classes")]: arrays[key] for key in sorted(arrays) if key.endswith("_classes") and key != "_classes"
    }
    if "split" in arrays and lists:
        raise UserError(f"{where} has both split and {', '.join(f'{s}_classes' for s in lists)}; give one of them")
    if "split" in arrays:
        column = np.asarray(arrays["split"])
        if column.shape != classes.shape or not all(isinstance(v, str | bytes) for v in column.tolist()):
            raise UserError(f"{where}: split must hold one split name (a string) per row, [{len(classes)}]")
        names = np.array([_text(v) for v in column.tolist()], dtype=str)
        return {str(name): np.flatnonzero(names == name) for name in _ordered(np.unique(names).tolist())}
    if not lists:
        return {DEFAULT_SPLIT: np.arange(len(classes))}
    owner: dict[int, str] = {}
    splits = {}
    for split in _ordered(list(lists)):
        wanted = np.asarray(lists[split]).reshape(-1)
        if wanted.size == 0:
            raise UserError(f"{where}: {split}_classes is empty; a split needs classes")
        wanted = _labels(wanted, f"{where}: {split}_classes")
        if (wanted.dtype.kind == "U") != (values.dtype.kind == "U"):
            raise UserError(f"{where}: {split}_classes and labels must both be integers or both be strings")
        found = np.searchsorted(values, wanted).clip(max=len(values) - 1)
        missing = values[found] != wanted
        if missing.any():
            raise UserError(f"{where}: {split}_classes names {wanted[missing].tolist()[0]!r}, a label no row has")
        for index in found.tolist():
            if owner.setdefault(index, split) != split:
                raise UserError(
                    f"{where}: class {values[index]!r} is in both {owner[index]}_classes and {split}_classes"
                )
        splits[split] = np.flatnonzero(np.isin(classes, found))
    return splits


def _ordered(names: list[str]) -> list[str]:
    """Split names with train, val and test first, in that order."""
    usual = ["train", "val", "test"]
    return [n for n in usual if n in names] + sorted(n for n in names if n not in usual)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
