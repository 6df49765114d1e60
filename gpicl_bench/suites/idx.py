"""The MNIST family — MNIST, Fashion-MNIST, KMNIST, EMNIST — read from their standard IDX files in a directory.

Files: ``{prefix}train-images-idx3-ubyte``, ``{prefix}train-labels-idx1-ubyte``, ``{prefix}t10k-images-idx3-ubyte``,
``{prefix}t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``). EMNIST ships them with a prefix such as
``emnist-balanced-`` and its images transposed (option ``transpose``). An IDX file is a big-endian header — magic
(0x0000 08 ndim: unsigned bytes), one int32 size per dimension — then the uint8 data.

Splits: ``train`` and ``val`` are 90% and 10% of every class of the training file (fixed seeded shuffle), ``test`` is
the t10k file. ``resize=N`` area-averages images to N×N (``resize=8`` makes MNIST fit the digits-trained GPICL
checkpoint without the input map); pixels are then z-normalised with the ``train`` mean and std.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gpicl_bench.errors import UserError
from gpicl_bench.suites.base import SplitData, split_by_class, standardised_split
from gpicl_bench.suites.images import fingerprint_files

TRAIN_FRACTIONS = {"train": 0.9, "val": 0.1}
SPLIT_SEED = 20221209
LAYOUT = "expected {prefix}train-images-idx3-ubyte[.gz], {prefix}train-labels-idx1-ubyte[.gz], {prefix}t10k-… in"


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dims`` dimensions; a wrong or truncated file is a user error."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise UserError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 + 4 * dims or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != dims:
        raise UserError(f"{path} is not an IDX file of unsigned bytes with {dims} dimension(s)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated or padded: header says {shape}, data holds {data.size} bytes")
    return data.reshape(shape)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{root}: no {name}[.gz]")


@functools.cache
def _load(
    root: Path, prefix: str, resize: int, transpose: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    if not root.is_dir():
        raise UserError(f"no IDX directory {root}; {LAYOUT.format(prefix=prefix)} it")
    parts = {}
    for part in ("train", "t10k"):
        images = read_idx(_find(root, f"{prefix}{part}-images-idx3-ubyte"), 3)
        labels = read_idx(_find(root, f"{prefix}{part}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels):
            raise UserError(f"{root}: {prefix}{part} has {len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise UserError(f"{root}: {prefix}{part} holds no images")
        parts[part] = (images, labels.astype(np.int64))
    images = np.concatenate([parts["train"][0], parts["t10k"][0]])
    if transpose:
        images = images.transpose(0, 2, 1)
    pixels = torch.from_numpy(images.astype(np.float32))
    if resize:
        pixels = F.adaptive_avg_pool2d(pixels[:, None], resize)[:, 0]
    labels = np.concatenate([parts["train"][1], parts["t10k"][1]])
    n_train = len(parts["train"][1])
    rows = split_by_class(labels[:n_train], TRAIN_FRACTIONS, SPLIT_SEED)
    rows["test"] = np.arange(n_train, len(labels))
    return pixels.flatten(1).numpy(), labels, rows


class IDX:
    """An MNIST-family dataset in IDX files (options: root, prefix, resize, transpose)."""

    splits = ("train", "val", "test")

    def __init__(self, *, root: str = "", prefix: str = "", resize: int = 0, transpose: bool = False) -> None:
        if not root:
            raise UserError("suite idx needs root=DIR, the directory of the IDX files")
        if resize < 0:
            raise UserError(f"resize must be a positive size (or 0 to keep the size), got {resize}")
        self.root, self.prefix, self.resize, self.transpose = Path(root), prefix, resize, transpose

    def fingerprint(self) -> str:
        """The IDX files' digest (:func:`fingerprint_files`), the same wherever they live."""
        parts = [f"{self.prefix}{part}-{kind}" for part in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]
        return fingerprint_files(self.root, (self.root / f"{name}-ubyte{gz}" for name in parts for gz in ("", ".gz")))

    def load(self, split: str) -> SplitData:
        images, labels, rows = _load(self.root.resolve(), self.prefix, self.resize, self.transpose)
        names = tuple(str(c) for c in range(int(labels.max()) + 1))
        return standardised_split(images, labels, rows, split, f"idx suite at {self.root}", names)
