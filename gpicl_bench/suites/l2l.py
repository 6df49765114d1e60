"""learn2learn's vision datasets as suite sources, through its own loaders and downloads (optional extra).

learn2learn is optional because its last release (0.2.0, 2023) does not build on Python ≥ 3.11 and pins old,
heavy dependencies (gym, gsutil, qpth, torchvision); the core never imports it. Where it is importable (a Python
3.10 environment with ``pip install 'gpicl-bench[l2l]'``), ``l2l:dataset=NAME`` reads any of its vision datasets
with its own file handling, and ``download`` lets it fetch them. Note that learn2learn unpickles its files with the
standard, unrestricted unpickler: use it on downloads you trust (this package's own ``mini-imagenet`` and
``tiered-imagenet`` suites read the same files safely).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gpicl_bench.encoders.external import optional_import
from gpicl_bench.errors import UserError
from gpicl_bench.suites.images import ImageItem, ImageSplit, fingerprint_files, missing_layout

DATASETS = {
    "mini-imagenet": "MiniImagenet",
    "tiered-imagenet": "TieredImagenet",
    "cifarfs": "CIFARFS",
    "fc100": "FC100",
    "cub": "CUBirds200",
    "aircraft": "FGVCAircraft",
    "vgg-flowers": "VGGFlower102",
    "fungi": "FGVCFungi",
    "textures": "DescribableTextures",
    "quickdraw": "Quickdraw",
}
MODES = {"train": "train", "val": "validation", "test": "test"}  # learn2learn's names of the splits


@dataclass(frozen=True)
class _DatasetItem(ImageItem):
    """One image of a learn2learn dataset, fetched from it only when opened."""

    dataset: Any = None
    index: int = 0

    def open(self) -> Image.Image:
        image = self.dataset[self.index][0]
        if isinstance(image, torch.Tensor):  # e.g. MiniImagenet: float CHW in 0..255
            array = image.detach().cpu().numpy()
            array = array.transpose(1, 2, 0) if array.ndim == 3 else array
            image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8).squeeze())
        if not isinstance(image, Image.Image):
            raise UserError(f"{self.name}: learn2learn returned a {type(image).__name__}, not an image")
        return image.convert("RGB")


class L2LVision:
    """A learn2learn vision dataset (``dataset=`` one of :data:`DATASETS`) split as learn2learn splits it."""

    splits = tuple(MODES)
    default_dir = "learn2learn"
    layout = "learn2learn's own files for the dataset under DIR (the option download lets learn2learn fetch them)"

    def __init__(self, *, root: str, dataset: str = "mini-imagenet", download: bool = False) -> None:
        if dataset not in DATASETS:
            raise UserError(f"l2l has no dataset {dataset!r}; datasets: {', '.join(DATASETS)}")
        self.root = Path(root)
        self.dataset = dataset
        self.download = download

    def images(self, split: str) -> ImageSplit:
        if split not in MODES:
            raise UserError(f"l2l has no split {split!r}; splits: {', '.join(MODES)}")
        datasets = optional_import("learn2learn.vision.datasets", "l2l")
        try:
            source = getattr(datasets, DATASETS[self.dataset])(
                root=str(self.root), mode=MODES[split], download=self.download
            )
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            problem = f"learn2learn could not load it ({error})"
            raise missing_layout(f"l2l:{self.dataset}", self.root, problem, self.layout) from None
        labels = np.array([int(source[index][1]) for index in range(len(source))], dtype=np.int64)
        classes = np.unique(labels)
        items: Sequence[ImageItem] = [
            _DatasetItem(Path(), f"l2l:{self.dataset}/{split}[{index}]", dataset=source, index=index)
            for index in range(len(source))
        ]
        return ImageSplit(items, np.searchsorted(classes, labels), tuple(str(c) for c in classes))

    def fingerprint(self) -> str:
        return fingerprint_files(self.root, (path for path in self.root.iterdir() if path.is_file()))
