"""miniImageNet and tieredImageNet, the ImageNet subsets of few-shot learning, in the layouts they are shared in.

miniImageNet (Ravi & Larochelle's splits): 64/16/20 classes × 600 images of 84×84, as JPEG files listed in
``{split}.csv`` or as learn2learn's pickled arrays. tieredImageNet (Ren et al.): 351/97/160 classes under 20/6/8
general categories, as pickled PNG bytes or as an ``.npz`` array. Class indices follow the sorted wnids
(miniImageNet) or the dataset's own label numbers (tieredImageNet, named by its ``label_*_str`` lists where present).
Pickles are read only through :mod:`gpicl_bench.safe_pickle`.
"""

from __future__ import annotations

import abc
import csv
import struct
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpicl_bench import safe_pickle
from gpicl_bench.errors import UserError
from gpicl_bench.suites.images import ImageItem, ImageSplit, fingerprint_files, missing_layout

_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _text(value: object) -> str:
    """A key or name as text: Python 2 pickles read with ``encoding="bytes"`` give their ``str`` as bytes."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _LazyItems(Sequence[ImageItem]):
    """Image items made when indexed: tieredImageNet's 448,695 training images would otherwise each keep an item (and
    a bytes copy of its PNG) alive as long as the suite."""

    def __init__(self, count: int, make: Callable[[int], ImageItem]) -> None:
        self._count, self._make = count, make

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int | slice) -> ImageItem | list[ImageItem]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(self._count)[index]]
        return self._make(range(self._count)[index])


def _npz_images(path: Path) -> np.ndarray:
    """The npz's ``images`` array, memory-mapped where stored uncompressed (``np.savez``) so that tieredImageNet's
    9.5 GB training split is paged in as used; compressed members (``np.savez_compressed``) and other dtypes are read
    whole. Object arrays are refused, as ``np.load`` refuses them without ``allow_pickle``."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("images.npy")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                header = _NPY_HEADERS[version](member) if version in _NPY_HEADERS else None
                if info.compress_type != zipfile.ZIP_STORED or header is None or header[2] != np.uint8:
                    # read whole, where read_array refuses object arrays; mapped, their bytes would be taken as pointers
                    member.seek(0)
                    return np.lib.format.read_array(member, allow_pickle=False)
                shape, fortran, dtype = header
                header_size = member.tell()
        with path.open("rb") as file:  # the member's bytes follow its local header (30 bytes), name and extra field
            file.seek(info.header_offset + 26)
            name_size, extra_size = struct.unpack("<HH", file.read(4))
        offset = info.header_offset + 30 + name_size + extra_size + header_size
        return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)
    except KeyError:
        raise UserError(f"{path} holds no array named images") from None
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile, struct.error) as error:
        raise UserError(f"cannot read {path}: {error}") from None


class _ImageNetSuite(abc.ABC):
    """What both suites share: the splits, reading each split once (the pickles take minutes and gigabytes), errors."""

    splits = ("train", "val", "test")
    default_dir: str
    layout: str

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self._read_splits: dict[str, ImageSplit] = {}

    def images(self, split: str) -> ImageSplit:
        """The split's images, read on first use."""
        if split not in self.splits:
            raise UserError(f"{self.default_dir} has splits {', '.join(self.splits)}, not {split!r}")
        if split not in self._read_splits:
            self._read_splits[split] = self._read(split)
        return self._read_splits[split]

    @abc.abstractmethod
    def _read(self, split: str) -> ImageSplit: ...

    def _error(self, problem: str) -> UserError:
        return missing_layout(self.default_dir, self.root, problem, self.layout)

    def _load_dict(self, path: Path) -> dict[str, Any]:
        """A pickled dict with its keys as text (Python 2 pickles, read as bytes, have bytes keys)."""
        data = safe_pickle.load(path, encoding="bytes")
        if not isinstance(data, dict):
            raise self._error(f"{path.name} holds a {type(data).__name__}, not a dict")
        return {_text(key): value for key, value in data.items()}


_L2L_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}


class MiniImageNet(_ImageNetSuite):
    """miniImageNet as Ravi & Larochelle's CSVs over ``images/`` or as learn2learn's pickles, whichever is there."""

    default_dir = "mini-imagenet"
    layout = (
        "images/ with train.csv, val.csv, test.csv (header filename,label; rows like "
        "n0153282900000005.jpg,n01532829), or learn2learn's mini-imagenet-cache-{train,validation,test}.pkl "
        "(validation also as -val) holding image_data and class_dict"
    )

    def __init__(self, *, root: str) -> None:
        super().__init__(root)
        csvs = {split: (self.root / f"{split}.csv",) for split in self.splits}
        pickles = {s: tuple(self.root / f"mini-imagenet-cache-{n}.pkl" for n in _L2L_NAMES[s]) for s in self.splits}
        found = [files for files in (csvs, pickles) if any(p.is_file() for paths in files.values() for p in paths)]
        if not found:
            raise self._error("found neither train.csv, val.csv, test.csv nor mini-imagenet-cache-*.pkl")
        self._files = found[0]

    def fingerprint(self) -> str:
        """Digest of the split files (CSVs or pickles) of the layout found."""
        return fingerprint_files(self.root, (path for paths in self._files.values() for path in paths))

    def _read(self, split: str) -> ImageSplit:
        path = next((path for path in self._files[split] if path.is_file()), None)
        if path is None:
            raise self._error(f"no {' or '.join(path.name for path in self._files[split])}")
        return self._read_csv(path) if path.suffix == ".csv" else self._read_pickle(path)

    def _read_csv(self, path: Path) -> ImageSplit:
        folder = self.root / "images"
        if not folder.is_dir():
            raise self._error("no images/ folder")
        try:
            with path.open(newline="", encoding="utf-8") as file:
                rows = list(csv.reader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise UserError(f"cannot read {path}: {error}") from None
        if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
            raise self._error(f"{path.name} does not start with the header filename,label")
        body = [(line, [cell.strip() for cell in row]) for line, row in enumerate(rows[1:], start=2) if row]
        bad = next((line for line, row in body if len(row) != 2 or not all(row)), None)
        if bad is not None:
            raise self._error(f"{path.name} line {bad} is not filename,label")
        if not body:
            raise self._error(f"{path.name} lists no images")
        names, labels = np.unique([label for _, (_, label) in body], return_inverse=True)
        items = [ImageItem(source=folder / file, name=str(folder / file)) for _, (file, _) in body]
        return ImageSplit(items, labels.astype(np.int64), tuple(str(name) for name in names))

    def _read_pickle(self, path: Path) -> ImageSplit:
        data = self._load_dict(path)
        images, classes = data.get("image_data"), data.get("class_dict")
        if not _is_rgb_batch(images):
            raise self._error(f"{path.name}: image_data is not a uint8 array [N, H, W, 3]")
        if not isinstance(classes, dict) or not classes:
            raise self._error(f"{path.name}: class_dict is not a dict of wnid: row indices")
        rows = {_text(wnid): np.asarray(indices) for wnid, indices in classes.items()}
        bad = next((wnid for wnid, r in rows.items() if r.ndim != 1 or not r.size or r.dtype.kind not in "iu"), None)
        if bad is not None:
            raise self._error(f"{path.name}: class_dict[{bad!r}] is not a list of row indices")
        every = np.concatenate(list(rows.values())).astype(np.int64)
        count = len(images)
        if ((every < 0) | (every >= count)).any() or (np.bincount(every, minlength=count) != 1).any():
            raise self._error(f"{path.name}: class_dict does not put each of the {count} images in exactly one class")
        names = tuple(sorted(rows))
        labels = np.empty(count, dtype=np.int64)
        for index, name in enumerate(names):
            labels[rows[name]] = index
        items = _LazyItems(count, lambda row: ImageItem(source=images[row], name=f"{path}[{row}]"))
        return ImageSplit(items, labels, names)


class TieredImageNet(_ImageNetSuite):
    """tieredImageNet as Ren et al.'s PNG pickles or the npz variant; ``labels="general"`` classifies images by their
    20/6/8 general categories instead of their 351/97/160 specific classes."""

    default_dir = "tiered-imagenet"
    layout = (
        "{split}_images_png.pkl (a list of PNG-encoded images) or {split}_images.npz (array images, uint8 "
        "[N, 84, 84, 3]), each with {split}_labels.pkl (a dict with label_specific or labels, label_general, "
        "label_specific_str, label_general_str), for split in train, val, test"
    )

    def __init__(self, *, root: str, labels: str = "specific") -> None:
        if labels not in ("specific", "general"):
            raise UserError(f"tiered-imagenet option labels must be specific or general, not {labels!r}")
        super().__init__(root)
        self.labels = labels

    def fingerprint(self) -> str:
        """Digest of every split's image and label files."""
        kinds = ("images_png.pkl", "images.npz", "labels.pkl")
        return fingerprint_files(self.root, (self.root / f"{split}_{kind}" for split in self.splits for kind in kinds))

    def _read(self, split: str) -> ImageSplit:
        labels_path = self.root / f"{split}_labels.pkl"
        png, npz = self.root / f"{split}_images_png.pkl", self.root / f"{split}_images.npz"
        if not labels_path.is_file():
            raise self._error(f"no {labels_path.name}")
        images = next((path for path in (png, npz) if path.is_file()), None)
        if images is None:
            raise self._error(f"no {png.name} or {npz.name}")
        labels, names = self._read_labels(labels_path)  # first: it is small, the images are not
        items = self._png_items(images) if images == png else self._npz_items(images)
        if len(items) != len(labels):
            raise self._error(f"{images.name} holds {len(items)} images but {labels_path.name} {len(labels)} labels")
        return ImageSplit(items, labels, names)

    def _read_labels(self, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
        data = self._load_dict(path)
        keys = ("label_specific", "labels") if self.labels == "specific" else ("label_general",)
        key = next((key for key in keys if key in data), None)
        if key is None:
            raise self._error(f"{path.name} has no {' or '.join(keys)} (it has {', '.join(sorted(data))})")
        values = np.asarray(data[key])
        if values.ndim != 1 or not values.size or values.dtype.kind not in "iu":
            raise self._error(f"{path.name}: {key} is not a list of integer labels")
        present, labels = np.unique(values, return_inverse=True)
        strings = data.get(f"label_{self.labels}_str")
        if strings is None:
            return labels.astype(np.int64), tuple(str(value) for value in present)
        strings = [_text(string) for string in strings]
        if present.max() >= len(strings):
            raise self._error(f"{path.name}: {key} goes beyond the {len(strings)} names of label_{self.labels}_str")
        return labels.astype(np.int64), tuple(strings[value] for value in present)

    def _png_items(self, path: Path) -> Sequence[ImageItem]:
        entries = safe_pickle.load(path, encoding="bytes")
        listed = isinstance(entries, list) or (isinstance(entries, np.ndarray) and entries.dtype == object)
        if not listed or not all(map(_is_encoded, entries)):
            raise self._error(f"{path.name} is not a list of PNG-encoded images (bytes or uint8 arrays)")
        return _LazyItems(len(entries), lambda row: ImageItem(source=bytes(entries[row]), name=f"{path}[{row}]"))

    def _npz_items(self, path: Path) -> Sequence[ImageItem]:
        images = _npz_images(path)
        if not _is_rgb_batch(images):
            raise self._error(f"{path.name}: images is {images.dtype} {list(images.shape)}, not uint8 [N, H, W, 3]")
        return _LazyItems(len(images), lambda row: ImageItem(source=np.asarray(images[row]), name=f"{path}[{row}]"))


def _is_rgb_batch(images: object) -> bool:
    """Whether ``images`` is decoded RGB images as the suites' arrays hold them: uint8 [N, H, W, 3]."""
    return isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3


def _is_encoded(entry: object) -> bool:
    """Whether a tieredImageNet entry is an encoded image: bytes, or uint8 as cv2.imencode returns it ([n] or
    [n, 1])."""
    if isinstance(entry, np.ndarray):
        return entry.dtype == np.uint8 and (entry.ndim == 1 or entry.shape[1:] == (1,))
    return isinstance(entry, bytes)
