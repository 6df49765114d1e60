"""Tiny copies of the fine-grained datasets' on-disk layouts (real file names, formats and headers), for tests.

Every image is painted in its class's colour, so a test can decode an image and check its label. Colours sit on a
40-level grid and flat regions are aligned to JPEG's 8×8 blocks (saved without chroma subsampling), so they survive
JPEG within a few levels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

Colour = tuple[int, int, int]

CUB_SIZE = (32, 24)  # width, height
CUB_BOX = (8.0, 8.0, 16.0, 8.0)  # x y w h of every bird: the crop is 16×8, the rest of the photo is black
AIRCRAFT_SIZE = (32, 36)  # 16 rows of photo above the 20-row white banner
AIRCRAFT_BOX = (8, 0, 24, 16)  # xmin ymin xmax ymax: the crop is 16×16
CHESTX_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")
CHESTX_LEFT_OUT = ("No Finding", "Pneumonia", "Effusion|Mass", "Hernia")
CHESTX_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(re.split(r",\s*", text))


# FGVC-Aircraft's data/variants.txt, in its order.
AIRCRAFT_VARIANTS = _names(
    "707-320, 727-200, 737-200, 737-300, 737-400, 737-500, 737-600, 737-700, 737-800, 737-900, 747-100, 747-200, "
    "747-300, 747-400, 757-200, 757-300, 767-200, 767-300, 767-400, 777-200, 777-300, A300B4, A310, A318, A319, A320, "
    "A321, A330-200, A330-300, A340-200, A340-300, A340-500, A340-600, A380, ATR-42, ATR-72, An-12, BAE 146-200, "
    "BAE 146-300, BAE-125, Beechcraft 1900, Boeing 717, C-130, C-47, CRJ-200, CRJ-700, CRJ-900, Cessna 172, "
    "Cessna 208, Cessna 525, Cessna 560, Challenger 600, DC-10, DC-3, DC-6, DC-8, DC-9-30, DH-82, DHC-1, DHC-6, "
    "DHC-8-100, DHC-8-300, DR-400, Dornier 328, E-170, E-190, E-195, EMB-120, ERJ 135, ERJ 145, Embraer Legacy 600, "
    "Eurofighter Typhoon, F-16A/B, F/A-18, Falcon 2000, Falcon 900, Fokker 100, Fokker 50, Fokker 70, Global Express, "
    "Gulfstream IV, Gulfstream V, Hawk T1, Il-76, L-1011, MD-11, MD-80, MD-87, MD-90, Metroliner, Model B200, PA-28, "
    "SR-20, Saab 2000, Saab 340, Spitfire, Tornado, Tu-134, Tu-154, Yak-42"
)


def colour(index: int) -> Colour:
    """Class ``index``'s colour: distinct for 216 classes, each channel in 20..220."""
    return 20 + 40 * (index % 6), 20 + 40 * (index // 6 % 6), 20 + 40 * (index // 36 % 6)


def paint(path: Path, size: tuple[int, int], fill: Colour, box: tuple[int, int, int, int], banner: int = 0) -> None:
    """A black picture with ``box`` in ``fill`` and a white banner of ``banner`` rows at the bottom."""
    image = Image.new("RGB", size)
    image.paste(fill, box)
    if banner:
        image.paste((255, 255, 255), (0, size[1] - banner, size[0], size[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, "JPEG", quality=95, subsampling=0)
    else:
        image.save(path)


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_cub(root: Path, n_classes: int = 200, per_class: int = 1) -> dict[str, Colour]:
    """``root`` as a CUB_200_2011 folder; returns each class's colour. Image ids interleave the classes and
    image_class_labels.txt runs backwards, so only ids tie an image to its class."""
    x, y, w, h = CUB_BOX
    names = {cid: f"{cid:03d}.Bird_{cid}" for cid in range(1, n_classes + 1)}
    images = [
        (f"{name}/Bird_{cid}_{k:04d}_{cid * 100 + k}.jpg", cid) for k in range(per_class) for cid, name in names.items()
    ]
    for path, cid in images:
        paint(root / "images" / path, CUB_SIZE, colour(cid), (int(x), int(y), int(x + w), int(y + h)))
    _write_lines(root / "classes.txt", [f"{cid} {name}" for cid, name in names.items()])
    _write_lines(root / "images.txt", [f"{i} {path}" for i, (path, _) in enumerate(images, 1)])
    _write_lines(
        root / "image_class_labels.txt", [f"{i} {cid}" for i, (_, cid) in reversed(list(enumerate(images, 1)))]
    )
    _write_lines(root / "bounding_boxes.txt", [f"{i} {x} {y} {w} {h}" for i in range(1, len(images) + 1)])
    _write_lines(root / "train_test_split.txt", [f"{i} {i % 2}" for i in range(1, len(images) + 1)])
    return {name: colour(cid) for cid, name in names.items()}


def write_aircraft(root: Path, n_variants: int = 100, per_class: int = 1) -> dict[str, Colour]:
    """``root`` as an fgvc-aircraft-2013b folder (files under data/); returns each variant's colour. Images rotate
    through the train/val/test lists, and trainval repeats train and val, as in the release."""
    data = root / "data"
    variants = AIRCRAFT_VARIANTS[:n_variants]
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    boxes = []
    for index, variant in enumerate(variants):
        for k in range(per_class):
            image_id = f"{1000000 + index * 100 + k:07d}"
            parts[("train", "val", "test")[(index + k) % 3]].append(f"{image_id} {variant}")
            boxes.append(f"{image_id} {' '.join(map(str, AIRCRAFT_BOX))}")
            paint(data / "images" / f"{image_id}.jpg", AIRCRAFT_SIZE, colour(index), AIRCRAFT_BOX, banner=20)
    parts["trainval"] = parts["train"] + parts["val"]
    for part, lines in parts.items():
        _write_lines(data / f"images_variant_{part}.txt", lines)
    _write_lines(data / "variants.txt", variants)
    _write_lines(data / "images_box.txt", boxes)
    return {variant: colour(index) for index, variant in enumerate(variants)}


def write_chestx(root: Path, per_class: int = 2) -> dict[str, Colour]:
    """``root`` as a CD-FSL chestx folder: each finding's single-label images in its grey level, plus one image of each
    row the suite must leave out; returns each kept finding's colour."""
    greys = {finding: 40 + 25 * i for i, finding in enumerate(CHESTX_FINDINGS)}
    findings = [*(finding for finding in CHESTX_FINDINGS for _ in range(per_class)), *CHESTX_LEFT_OUT]
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for n, finding in enumerate(findings, 1):
        name = f"{n:08d}_000.png"
        Image.new("L", (8, 8), greys.get(finding, 250)).save(root / "images" / name)
        rows.append([name, finding, "0", str(n), "58", "M", "PA", "2682", "2749", "0.143", "0.143"])
    with (root / "Data_Entry_2017.csv").open("w", newline="") as stream:
        stream.write(CHESTX_HEADER + "\n")
        csv.writer(stream).writerows(rows)
    return {finding: (grey,) * 3 for finding, grey in greys.items()}


def write_folder(root: Path, classes: Sequence[str], per_class: int = 2, suffix: str = ".png") -> dict[str, Colour]:
    """``root/<class>/<image>`` for each (possibly nested) class name; returns each class's colour."""
    for index, name in enumerate(classes):
        for k in range(per_class):
            paint(root / name / f"image_{k}{suffix}", (8, 8), colour(index), (0, 0, 8, 8))
    return {name: colour(index) for index, name in enumerate(classes)}
