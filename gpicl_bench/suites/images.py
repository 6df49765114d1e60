"""Image suites: datasets of images on disk (files, encoded bytes in pickles, or arrays) with class-disjoint splits.

An image suite lists, per split, where each image comes from and its class; it never decodes images itself. An
encoder (:mod:`gpicl_bench.encoders`) turns them into features, which the feature cache keeps, so the engine sees an
image suite as an ordinary suite of feature vectors.

Where the data lives: the suite option ``root=DIR`` (absolute, or relative to the data root), else the suite's own
default folder under the data root, which comes from ``--data-root``, the spec's ``data_root`` or the environment
variable ``GPICL_BENCH_DATA``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from gpicl_bench.errors import UserError

DATA_ROOT_VARIABLE = "GPICL_BENCH_DATA"

Box = tuple[int, int, int, int]  # (left, upper, right, lower) in pixels, as PIL's crop takes it


@dataclass(frozen=True)
class ImageItem:
    """Where one image comes from — a file, encoded bytes (PNG/JPEG), or a decoded uint8 array [H, W(, C)] — with
    an optional crop box; ``name`` identifies it in errors (a path, or ``file.pkl[row]``)."""

    source: Path | bytes | np.ndarray
    name: str
    box: Box | None = None

    def open(self) -> Image.Image:
        """The image as RGB, cropped to its box; an unreadable image is a user error naming it."""
        try:
            if isinstance(self.source, np.ndarray):
                image = Image.fromarray(self.source)
            else:
                image = Image.open(self.source if isinstance(self.source, Path) else io.BytesIO(self.source))
                image.load()
        except (OSError, ValueError, TypeError, Image.DecompressionBombError) as error:
            raise UserError(f"cannot read image {self.name}: {error}") from None
        image = image.convert("RGB")
        return image.crop(self.box) if self.box is not None else image


@dataclass(frozen=True)
class ImageSplit:
    """One split of an image suite: the images, their class index (int64 [n]) and a name per class index."""

    items: Sequence[ImageItem]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.items) != len(self.labels):
            raise ValueError(f"{len(self.items)} images but {len(self.labels)} labels")


@runtime_checkable
class ImageSuite(Protocol):
    """A suite of images. Options are keyword-only constructor arguments; ``root`` arrives resolved."""

    splits: tuple[str, ...]
    default_dir: str  # folder under the data root where the suite looks when no ``root`` option is given
    layout: str  # the expected on-disk layout, shown when the data is missing or malformed

    def images(self, split: str) -> ImageSplit:
        """The split's images; unknown splits, missing files and malformed indexes are user errors."""
        ...

    def fingerprint(self) -> str:
        """A digest of the data's identity that is the same wherever the data lives (:func:`fingerprint_files` of
        its index files); results record it and the feature cache keys on it. Must not decode images."""
        ...


def data_root(explicit: str | Path | None) -> Path | None:
    """The data root: the given one, else ``$GPICL_BENCH_DATA``, else none."""
    chosen = explicit if explicit not in (None, "") else os.environ.get(DATA_ROOT_VARIABLE)
    return Path(chosen).expanduser() if chosen else None


def resolve_root(suite: str, root_option: str | None, root: Path | None, default_dir: str) -> Path:
    """Where an image suite's files are: ``root_option`` (absolute or under the data root), else
    ``<data root>/<default_dir>``; a missing directory is a user error."""
    if root_option and Path(root_option).expanduser().is_absolute():
        path = Path(root_option).expanduser()
    elif root is not None:
        path = root / (root_option or default_dir)
    elif root_option:
        path = Path(root_option)
    else:
        raise UserError(
            f"suite {suite!r} needs its data: pass --data-root DIR (it looks in DIR/{default_dir}), "
            f"set {DATA_ROOT_VARIABLE}, or give the suite option root=DIR"
        )
    if not path.is_dir():
        raise UserError(f"suite {suite!r}: no directory {path}")
    return path


def missing_layout(suite: str, root: Path, problem: str, layout: str) -> UserError:
    """The error for data that is not laid out as expected: what is wrong, then the layout the suite reads."""
    return UserError(f"{suite} data at {root}: {problem}; expected layout: {layout}")


# Files up to this size are fingerprinted by their whole content (index files: CSV, text lists, label pickles);
# larger ones (image arrays, pickled images) by their size and their first and last mebibyte.
WHOLE_CONTENT_BYTES = 64 << 20
_SAMPLE_BYTES = 1 << 20


def fingerprint_files(root: Path, paths: Iterable[Path], contents: bool = True) -> str:
    """A digest of the data that does not depend on where it lives: each path relative to ``root``, its size and
    (with ``contents``) its content — whole for index files, sampled for large arrays. Modification times and the
    machine's paths stay out, so two copies of a dataset get the same fingerprint; a missing file counts as such."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        name = path.relative_to(root).as_posix()
        try:
            size = path.stat().st_size
            digest.update(f"{name}\0{size}\n".encode())
            if contents:
                digest.update(_content_digest(path, size))
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()


def _content_digest(path: Path, size: int) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        if size <= WHOLE_CONTENT_BYTES:
            for block in iter(lambda: file.read(_SAMPLE_BYTES), b""):
                digest.update(block)
        else:
            digest.update(file.read(_SAMPLE_BYTES))
            file.seek(-_SAMPLE_BYTES, os.SEEK_END)
            digest.update(file.read(_SAMPLE_BYTES))
    return digest.digest()
