"""Fine-grained and cross-domain image suites read from the datasets' own index files: CUB-200-2011, FGVC-Aircraft,
ChestX-ray14 (CD-FSL's 7-class pool), and any class-per-folder tree.

Class splits are what make few-shot numbers comparable, so each published split is a preset:

- ``cub`` ``closer-look`` (100/50/50): the sorted class folders, 0-based index i — i%2==0 train, i%4==1 val,
  i%4==3 test. ``frn`` (100/50/50, CAML's): the same rule on the 1-based class id, so it picks different classes.
  ``meta-dataset`` (140/30/30): Meta-Dataset's fixed list (also learn2learn's).
- ``aircraft`` ``frn`` (50/25/25): the rule above on the 0-based variants.txt index. ``meta-dataset`` (70/15/15): its
  fixed list, cropped to the boxes as Meta-Dataset does.
- ``chestx``: a ``test`` split only; CD-FSL uses the whole pool as a test domain.
- ``folder``: any class-per-folder tree, split by its own train/val/test folders or by a seeded class shuffle.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
from PIL import Image

from gpicl_bench.errors import UserError, unknown_name_error
from gpicl_bench.suites.images import Box, ImageItem, ImageSplit, fingerprint_files, missing_layout

T = TypeVar("T")

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
BANNER_PIXELS = 20  # FGVC-Aircraft's copyright banner at the bottom of every image


def _listed(text: str) -> frozenset[str]:
    """A fixed class list, kept as comma-separated text so that it stays a few lines long."""
    return frozenset(part.strip() for part in text.split(","))


# Meta-Dataset's fixed class splits, from google-research/meta-dataset
# meta_dataset/dataset_conversion/splits/{cu_birds,aircraft}_splits.json (learn2learn's cu_birds200.py has the same
# CUB lists). Only the held-out classes are listed: train is every other class. CUB classes by the NNN of their
# NNN.Class_name, i.e. their zero-padded id.
MD_CUB_HELD_OUT = {
    "val": _listed(
        "044, 051, 052, 055, 057, 061, 064, 066, 068, 072, 076, 080, 084, 096, 113, 121, 127, 136, 140, 145, "
        "150, 155, 159, 162, 172, 176, 178, 198, 199, 200"
    ),
    "test": _listed(
        "008, 009, 015, 020, 028, 030, 035, 039, 045, 046, 082, 085, 094, 101, 103, 112, 118, 122, 128, 133, "
        "134, 137, 147, 148, 163, 168, 169, 170, 193, 194"
    ),
}
MD_AIRCRAFT_HELD_OUT = {
    "val": _listed(
        "737-900, 757-300, 767-200, A310, A320, BAE 146-300, CRJ-900, DC-10, DC-8, DC-9-30, DHC-8-300, Gulfstream V, "
        "SR-20, Tornado, Yak-42"
    ),
    "test": _listed(
        "737-400, 737-800, 757-200, 767-400, ATR-42, BAE-125, Beechcraft 1900, Boeing 717, CRJ-200, CRJ-700, E-170, "
        "L-1011, MD-90, Saab 2000, Spitfire"
    ),
}
CHESTX_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")


def alternating_split(index: int) -> str:
    """The closer-look / FRN class rule: even → train, 1 mod 4 → val, 3 mod 4 → test (half, a quarter, a quarter)."""
    return "train" if index % 2 == 0 else "val" if index % 4 == 1 else "test"


def held_out_split(held_out: dict[str, frozenset[T]], key: T) -> str:
    """The split of a class under a fixed list that names the held-out classes; every other class trains."""
    return next((split for split, keys in held_out.items() if key in keys), "train")


class _Files:
    """What the suites share: their root, errors that show the expected layout, index parsing and split assembly."""

    name: ClassVar[str]
    layout: ClassVar[str]
    presets: ClassVar[tuple[str, ...]] = ()
    splits: tuple[str, ...] = SPLITS
    root: Path

    def _check_preset(self, preset: str) -> None:
        if preset not in self.presets:
            raise unknown_name_error(f"{self.name} preset", preset, self.presets)

    def _error(self, problem: str) -> UserError:
        return missing_layout(self.name, self.root, problem, self.layout)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise UserError(f"suite {self.name} has no split {split!r}; its splits: {', '.join(self.splits)}")

    def _read(self, file: str, fields: int, parse: Callable[[list[str]], T]) -> list[T]:
        """Each non-blank line of ``root/file`` split on whitespace into ``fields`` fields (the last keeps its
        spaces), then parsed; a missing file or a line that does not parse is a layout error naming it."""
        try:
            lines = (self.root / file).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise self._error(f"no {file}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise self._error(f"cannot read {file}: {error}") from None
        rows = []
        for number, line in enumerate(lines, 1):
            values = line.strip().split(maxsplit=fields - 1)
            if not values:
                continue
            try:
                if len(values) != fields:
                    raise ValueError(line)
                rows.append(parse(values))
            except ValueError:
                raise self._error(f"{file} line {number} is malformed: {line.strip()[:80]!r}") from None
        return rows

    def _item(self, path: Path, box: Box | None = None, kind: type[ImageItem] = ImageItem) -> ImageItem:
        """The image at ``path``, checked to exist so that a gap in the data shows before any encoding starts."""
        if not path.is_file():
            raise self._error(f"missing image {path.relative_to(self.root)}")
        return kind(source=path, name=str(path), box=box)

    def _assemble(self, split: str, classes: Sequence[tuple[str, Sequence[ImageItem]]]) -> ImageSplit:
        """The split from (class name, images) in label order; an empty split or class is a layout error."""
        if not classes:
            raise self._error(f"split {split!r} has no classes")
        empty = next((name for name, items in classes if not items), None)
        if empty is not None:
            raise self._error(f"class {empty!r} has no images")
        items = [item for _, group in classes for item in group]
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(group) for _, group in classes])
        return ImageSplit(items=items, labels=labels, class_names=tuple(name for name, _ in classes))


def _xywh_box(values: Sequence[str]) -> Box:
    x, y, w, h = map(float, values)
    if w <= 0 or h <= 0:
        raise ValueError("empty box")
    return round(x), round(y), round(x + w), round(y + h)


def _corner_box(values: Sequence[str]) -> Box:
    left, upper, right, lower = map(int, values)
    if right <= left or lower <= upper:
        raise ValueError("empty box")
    return left, upper, right, lower


class CUB(_Files):
    """CUB-200-2011 birds (200 classes, 11,788 images); ``crop=true`` crops each image to its bird's box."""

    name = "cub"
    default_dir = "CUB_200_2011"
    layout = (
        "CUB_200_2011/ holding images.txt (<id> <NNN.Class>/<file>.jpg), classes.txt (<class id> <NNN.Class>), "
        "image_class_labels.txt (<id> <class id>), bounding_boxes.txt (<id> x y w h; read for crop=true) and "
        "images/<NNN.Class>/*.jpg"
    )
    presets = ("closer-look", "frn", "meta-dataset")
    index_files = ("images.txt", "classes.txt", "image_class_labels.txt", "bounding_boxes.txt")

    def __init__(self, *, root: str, preset: str = "frn", crop: bool = False) -> None:
        self._check_preset(preset)
        self.root, self.preset, self.crop = Path(root), preset, crop

    def _class_split(self, classes: dict[int, str]) -> dict[int, str]:
        """Class id → split under the preset."""
        if self.preset == "frn":
            return {cid: alternating_split(cid) for cid in classes}
        if self.preset == "meta-dataset":
            return {cid: held_out_split(MD_CUB_HELD_OUT, f"{cid:03d}") for cid in classes}
        order = sorted(classes, key=classes.__getitem__)
        return {cid: alternating_split(i) for i, cid in enumerate(order)}

    def images(self, split: str) -> ImageSplit:
        self._check_split(split)
        classes = dict(self._read("classes.txt", 2, lambda v: (int(v[0]), v[1])))
        paths = self._read("images.txt", 2, lambda v: (int(v[0]), v[1]))
        labels = dict(self._read("image_class_labels.txt", 2, lambda v: (int(v[0]), int(v[1]))))
        boxes = dict(self._read("bounding_boxes.txt", 5, lambda v: (int(v[0]), _xywh_box(v[1:])))) if self.crop else {}
        class_split = self._class_split(classes)
        members: dict[int, list[ImageItem]] = {cid: [] for cid in sorted(classes) if class_split[cid] == split}
        for image_id, relative in paths:
            cid = labels.get(image_id)
            if cid is None:
                raise self._error(f"image {image_id} of images.txt has no line in image_class_labels.txt")
            if cid not in classes:
                raise self._error(f"image {image_id} has class {cid}, which classes.txt lacks")
            if cid in members:
                if self.crop and image_id not in boxes:
                    raise self._error(f"image {image_id} of images.txt has no line in bounding_boxes.txt")
                members[cid].append(self._item(self.root / "images" / relative, boxes.get(image_id)))
        return self._assemble(split, [(classes[cid], items) for cid, items in members.items()])

    def fingerprint(self) -> str:
        return fingerprint_files(self.root, (self.root / file for file in self.index_files))


class _WithoutBanner(ImageItem):
    """An FGVC-Aircraft image minus its 20-pixel bottom banner: the ``crop=false`` view, which keeps the background."""

    def open(self) -> Image.Image:
        image = super().open()
        return image.crop((0, 0, image.width, image.height - BANNER_PIXELS))


class Aircraft(_Files):
    """FGVC-Aircraft (100 variants, 10,000 images). ``crop=true`` crops to the aircraft's box as Meta-Dataset does
    (this also drops the banner); ``crop=false`` keeps the whole photo minus the banner."""

    name = "aircraft"
    default_dir = "fgvc-aircraft-2013b"
    layout = (
        "fgvc-aircraft-2013b/data/ holding variants.txt (one variant a line), "
        "images_variant_{train,val,trainval,test}.txt (<7-digit id> <variant>), "
        "images_box.txt (<id> xmin ymin xmax ymax; read for crop=true) and images/<id>.jpg"
    )
    presets = ("frn", "meta-dataset")
    variant_files = tuple(f"data/images_variant_{part}.txt" for part in ("train", "val", "trainval", "test"))
    index_files = (*variant_files, "data/variants.txt", "data/images_box.txt")

    def __init__(self, *, root: str, preset: str = "frn", crop: bool = True) -> None:
        self._check_preset(preset)
        self.root, self.preset, self.crop = Path(root), preset, crop

    def images(self, split: str) -> ImageSplit:
        self._check_split(split)
        variants = self._read("data/variants.txt", 1, lambda v: v[0])
        if self.preset == "frn":
            chosen = [v for i, v in enumerate(variants) if alternating_split(i) == split]
        else:
            chosen = [v for v in variants if held_out_split(MD_AIRCRAFT_HELD_OUT, v) == split]
        known, label_of = set(variants), {}
        for file in self.variant_files:
            for image_id, variant in self._read(file, 2, tuple):
                if variant not in known:
                    raise self._error(f"{file} names variant {variant!r}, which variants.txt lacks")
                if label_of.setdefault(image_id, variant) != variant:
                    raise self._error(f"image {image_id} is {label_of[image_id]!r} in one file, {variant!r} in {file}")
        boxes = dict(self._read("data/images_box.txt", 5, lambda v: (v[0], _corner_box(v[1:])))) if self.crop else {}
        members: dict[str, list[ImageItem]] = {v: [] for v in chosen}
        for image_id in sorted(label_of):
            if label_of[image_id] not in members:
                continue
            if self.crop and image_id not in boxes:
                raise self._error(f"image {image_id} has no line in images_box.txt")
            path = self.root / "data" / "images" / f"{image_id}.jpg"
            box, kind = (boxes[image_id], ImageItem) if self.crop else (None, _WithoutBanner)
            members[label_of[image_id]].append(self._item(path, box, kind))
        return self._assemble(split, list(members.items()))

    def fingerprint(self) -> str:
        return fingerprint_files(self.root, (self.root / file for file in self.index_files))


class ChestX(_Files):
    """NIH ChestX-ray14 as CD-FSL uses it: single-finding images of 7 diseases, all in a ``test`` split."""

    name = "chestx"
    default_dir = "chestx"
    splits = ("test",)
    layout = (
        "chestx/ holding Data_Entry_2017.csv (columns 'Image Index' and 'Finding Labels', |-separated) and a flat "
        "images/ with every listed image (merge the release's images_001…images_012 folders into it)"
    )
    index_file = "Data_Entry_2017.csv"

    def __init__(self, *, root: str) -> None:
        self.root = Path(root)

    def images(self, split: str) -> ImageSplit:
        self._check_split(split)
        members: dict[str, list[ImageItem]] = {name: [] for name in CHESTX_CLASSES}
        try:
            with (self.root / self.index_file).open(newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                missing = {"Image Index", "Finding Labels"} - set(reader.fieldnames or ())
                if missing:
                    raise self._error(f"{self.index_file} lacks column(s) {', '.join(sorted(missing))}")
                for row in reader:
                    finding, file = (row["Finding Labels"] or "").strip(), (row["Image Index"] or "").strip()
                    if finding in members:  # one finding among the seven: "A|B", "No Finding" never match
                        if not file:
                            raise self._error(f"{self.index_file} line {reader.line_num} has no Image Index")
                        members[finding].append(self._item(self.root / "images" / file))
        except FileNotFoundError:
            raise self._error(f"no {self.index_file}") from None
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise self._error(f"cannot read {self.index_file}: {error}") from None
        return self._assemble(split, list(members.items()))

    def fingerprint(self) -> str:
        return fingerprint_files(self.root, [self.root / self.index_file])


def _parse_fractions(text: str) -> tuple[float, ...]:
    """``train/val/test`` class fractions, each ≥ 0 and summing to 1."""
    try:
        fractions = tuple(float(part) for part in re.split(r"[/,]", text))
    except ValueError:
        fractions = ()
    if len(fractions) != 3 or not all(0 <= f <= 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"split_fractions must be three fractions train/val/test summing to 1, got {text!r}")
    return fractions


class Folder(_Files):
    """Any tree of class folders: ``root/<class>/…/<image>`` or the prepared ``root/{train,val,test}/<class>/…``.

    A class is a folder that directly holds images (.jpg .jpeg .png .bmp .gif .webp .tif .tiff, any case); its name
    is its path below root (or below the split folder), so nested classes such as ``Latin/character01`` work. Hidden
    files and folders are skipped; symbolic links are followed. The prepared form, chosen when root holds a folder
    named train, val or test, takes its splits from those folders (CAML's and FRN's prepared test sets). The plain
    form is one ``test`` split of every class, unless ``split_fractions`` such as ``0.6/0.2/0.2`` (commas work from
    Python) assigns whole classes to train/val/test: the sorted classes shuffled by numpy's ``default_rng(seed)``,
    then cut at the rounded cumulative fractions.
    """

    name = "folder"
    default_dir = ""
    layout = (
        "DIR/<class>/…/<image> (a class is a folder that directly holds .jpg .jpeg .png .bmp .gif .webp .tif .tiff "
        "images, nested names such as alphabet/character allowed), or DIR/{train,val,test}/<class>/…/<image>"
    )

    def __init__(self, *, root: str, split_fractions: str = "", seed: int = 0) -> None:
        self.root, self.seed = Path(root), seed
        self.fractions = _parse_fractions(split_fractions) if split_fractions else None
        folders = {e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")}
        self.prepared = bool(folders & set(SPLITS))
        if self.prepared:
            if folders - set(SPLITS):
                raise self._error(f"holds split folders and other folders ({', '.join(sorted(folders - set(SPLITS)))})")
            if self.fractions is not None:
                raise UserError(f"folder suite at {self.root}: split_fractions conflicts with its split folders")
            self.splits = tuple(s for s in SPLITS if s in folders)
        elif self.fractions is None:
            self.splits = ("test",)

    def _classes(self, base: Path) -> list[tuple[str, list[Path]]]:
        """Every folder under ``base`` that directly holds images: (its path below base, its sorted image files)."""
        classes: list[tuple[str, list[Path]]] = []
        reals: dict[str, str] = {}
        for directory, subdirs, files in os.walk(base, followlinks=True):
            real = reals[directory] = os.path.realpath(directory)
            if any(reals.get(str(parent)) == real for parent in Path(directory).parents):  # a link back up the tree
                subdirs[:] = []
                continue
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            images = sorted(f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS)
            if images and Path(directory) == base:
                raise self._error(f"images directly in {base} belong to no class")
            if images:
                classes.append((Path(directory).relative_to(base).as_posix(), [Path(directory) / f for f in images]))
        return sorted(classes, key=lambda c: c[0])

    def _split_classes(self, split: str) -> list[tuple[str, list[Path]]]:
        if self.prepared:
            return self._classes(self.root / split)
        classes = self._classes(self.root)
        if self.fractions is None:
            return classes
        order = np.random.default_rng(self.seed).permutation(len(classes))
        cuts = [0, *(round(f * len(classes)) for f in np.cumsum(self.fractions)[:-1]), len(classes)]
        part = SPLITS.index(split)
        return [classes[i] for i in sorted(order[cuts[part] : cuts[part + 1]])]

    def images(self, split: str) -> ImageSplit:
        self._check_split(split)
        classes = self._split_classes(split)
        return self._assemble(split, [(name, [self._item(f) for f in files]) for name, files in classes])

    def fingerprint(self) -> str:
        bases = [self.root / s for s in self.splits] if self.prepared else [self.root]
        files = (f for base in bases for _, files in self._classes(base) for f in files)
        return fingerprint_files(self.root, files, contents=False)  # the listing is its index
