"""Tiny miniImageNet and tieredImageNet folders in their real layouts: file names, CSV headers, pickle keys and, for
tieredImageNet's labels, the Python 2 pickling that only ``encoding=`` reads back.

Each image is its class's colour (:func:`colour`) plus a little noise, so a test can tell an image's class from its
pixels alone; images of different classes alternate in every file, so a misaligned label shows.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 84
PER_CLASS = 4
MINI = {"train": [f"n{k:08d}" for k in range(5)], "val": [f"n{k:08d}" for k in range(5, 8)]}
MINI["test"] = [f"n{k:08d}" for k in range(8, 12)]
# tieredImageNet: per split, the specific classes in label order (deliberately not sorted) and the general ones;
# specific class j belongs to general category j % (number of general categories)
TIERED = {
    "train": ([f"n{k:08d}" for k in (105, 101, 103, 100, 104, 102)], ["n00000900", "n00000901", "n00000902"]),
    "val": ([f"n{k:08d}" for k in (108, 106, 107)], ["n00000903", "n00000904"]),
    "test": ([f"n{k:08d}" for k in (112, 109, 111, 110)], ["n00000905", "n00000906"]),
}


def colour(name: str) -> np.ndarray:
    """The RGB colour of class ``n{k:08d}``; any two of the classes above differ by at least 24 in some channel."""
    k = int(name[1:])
    return np.array([(k * 67 + 20) % 256, (k * 131 + 90) % 256, (k * 29 + 170) % 256])


def general_of(split: str, name: str) -> str:
    """The general category of a tieredImageNet specific class."""
    specific, general = TIERED[split]
    return general[specific.index(name) % len(general)]


def _image(name: str, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-3, 4, size=(SIZE, SIZE, 3))
    return np.clip(colour(name) + noise, 0, 255).astype(np.uint8)


def _alternating(names: list[str]) -> list[str]:
    """Each image's class, the classes taking turns: n0, n1, n2, n0, n1, n2, …"""
    return [name for _ in range(PER_CLASS) for name in names]


def write_mini_csv(root: Path) -> None:
    """Ravi & Larochelle: images/<wnid><8 digits>.jpg listed in {train,val,test}.csv under filename,label."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, names in MINI.items():
        lines = ["filename,label"]
        for row, name in enumerate(_alternating(names)):
            file = f"{name}{row:08d}.jpg"
            Image.fromarray(_image(name, rng)).save(root / "images" / file, quality=95)
            lines.append(f"{file},{name}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_mini_pickles(root: Path, val_name: str = "validation") -> None:
    """learn2learn: mini-imagenet-cache-{train,<val_name>,test}.pkl, each {image_data, class_dict}."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, names in MINI.items():
        order = _alternating(names)
        data = {
            "image_data": np.stack([_image(name, rng) for name in order]),
            "class_dict": {name: [row for row, other in enumerate(order) if other == name] for name in names},
        }
        file = f"mini-imagenet-cache-{val_name if split == 'val' else split}.pkl"
        (root / file).write_bytes(pickle.dumps(data))


class _Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 wrote its ``str`` (the BINSTRING opcodes, decoded on load by ``encoding=``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        size = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size))
        self.write(obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def python2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2 with numpy 1 would: protocol 2, str as BINSTRING, numpy.core module names."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")


def _tiered_labels(split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    specific, general = TIERED[split]
    label_specific = np.array([specific.index(name) for name in _alternating(specific)], dtype=np.int64)
    return label_specific, label_specific % len(general), specific, general


def write_tiered_png(root: Path) -> None:
    """Ren et al.: {split}_images_png.pkl and {split}_labels.pkl, both pickled by Python 2 (dict keys and names as
    bytes). The PNG lists take each form seen: train a list of uint8 arrays as cv2.imencode gives them ([n, 1]), val
    a list of byte strings, test a numpy object array of 1-d uint8 arrays."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in TIERED:
        label_specific, label_general, specific, general = _tiered_labels(split)
        pngs = []
        for label in label_specific:
            buffer = io.BytesIO()
            Image.fromarray(_image(specific[label], rng)).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        if split == "train":
            entries: object = [np.frombuffer(png, dtype=np.uint8)[:, None] for png in pngs]
        elif split == "val":
            entries = pngs
        else:
            entries = np.empty(len(pngs), dtype=object)
            entries[:] = [np.frombuffer(png, dtype=np.uint8) for png in pngs]
        (root / f"{split}_images_png.pkl").write_bytes(python2_pickle(entries))
        labels = {
            b"label_specific": label_specific,
            b"label_general": label_general,
            b"label_specific_str": [name.encode() for name in specific],
            b"label_general_str": [name.encode() for name in general],
        }
        (root / f"{split}_labels.pkl").write_bytes(python2_pickle(labels))


def write_tiered_npz(root: Path, compressed: bool = False) -> None:
    """The npz variant: {split}_images.npz (array images [N, 84, 84, 3]) and {split}_labels.pkl holding only
    ``labels``, so class names are the label numbers."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in TIERED:
        label_specific, _, specific, _ = _tiered_labels(split)
        images = np.stack([_image(specific[label], rng) for label in label_specific])
        (np.savez_compressed if compressed else np.savez)(root / f"{split}_images.npz", images=images)
        (root / f"{split}_labels.pkl").write_bytes(pickle.dumps({"labels": label_specific}))
