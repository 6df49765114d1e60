"""The suite registry and suite references such as ``digits`` or ``digits:project``.

Every suite accepts the generic option ``project``: each episode's inputs go through its own random linear map
(GPICL's task augmentation, :func:`gpicl_bench.episodes.random_projections`). It is part of the suite's label in
results, so projected and plain evaluations never mix.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpicl_bench.encoders import encoder_label, encoder_ref
from gpicl_bench.registry import Ref, Registry, coerce_option, portable_name
from gpicl_bench.suites.base import SplitData, Suite

if TYPE_CHECKING:
    from gpicl_bench.features import FeatureSettings

# Entries declare their options, splits and (image suites) default folder under the data root, so that listing and
# checking suites import none of them; tests/test_registry.py checks the declarations against the classes.
SUITES: Registry[Suite] = Registry("suite", "gpicl_bench.suites")
_SPLITS = ("train", "val", "test")
SUITES.add(
    "digits",
    "gpicl_bench.suites.digits:Digits",
    "scikit-learn's 8×8 handwritten digits, 10 classes split by image (embedded, no download)",
    options={},
    splits=_SPLITS,
)
SUITES.add(
    "idx",
    "gpicl_bench.suites.idx:IDX",
    "MNIST, Fashion-MNIST, KMNIST or EMNIST from IDX files in root=DIR (optional resize=N)",
    options={"root": "", "prefix": "", "resize": 0, "transpose": False},
    splits=_SPLITS,
)
SUITES.add(
    "mini-imagenet",
    "gpicl_bench.suites.imagenet:MiniImageNet",
    "miniImageNet 64/16/20 classes: Ravi & Larochelle CSVs + images/, or l2l pickles",
    options={"root": str},
    splits=_SPLITS,
    default_dir="mini-imagenet",
)
SUITES.add(
    "cub",
    "gpicl_bench.suites.fine_grained:CUB",
    "CUB-200-2011 birds; preset=frn|closer-look (100/50/50) or meta-dataset (140/30/30); crop",
    options={"root": str, "preset": "frn", "crop": False},
    splits=_SPLITS,
    default_dir="CUB_200_2011",
)
SUITES.add(
    "aircraft",
    "gpicl_bench.suites.fine_grained:Aircraft",
    "FGVC-Aircraft variants; preset=frn (50/25/25) or meta-dataset (70/15/15); crop=true",
    options={"root": str, "preset": "frn", "crop": True},
    splits=_SPLITS,
    default_dir="fgvc-aircraft-2013b",
)
SUITES.add(
    "chestx",
    "gpicl_bench.suites.fine_grained:ChestX",
    "ChestX-ray14 as in CD-FSL: 7 single-finding classes, a test split only",
    options={"root": str},
    splits=("test",),
    default_dir="chestx",
)
SUITES.add(
    "folder",
    "gpicl_bench.suites.fine_grained:Folder",
    "any root=DIR/<class>/…/image tree, or DIR/{train,val,test}/<class>/… (split_fractions)",
    options={"root": str, "split_fractions": "", "seed": 0},
    splits=_SPLITS,
    default_dir="",
)
SUITES.add(
    "l2l",
    "gpicl_bench.suites.l2l:L2LVision",
    "a learn2learn vision dataset, dataset=NAME, with its loaders and downloads (extra: l2l)",
    options={"root": str, "dataset": "mini-imagenet", "download": False},
    splits=_SPLITS,
    default_dir="learn2learn",
)
SUITES.add(
    "tiered-imagenet",
    "gpicl_bench.suites.imagenet:TieredImageNet",
    "tieredImageNet 351/97/160 classes: Ren et al. PNG pickles or the npz variant",
    options={"root": str, "labels": "specific"},
    splits=_SPLITS,
    default_dir="tiered-imagenet",
)
SUITES.add(
    "features",
    "gpicl_bench.suites.precomputed:PrecomputedFeatures",
    "your own embeddings: path=FILE (.npz, .h5, .pt or .parquet) of features, labels, splits",
    options={"path": ""},
    splits=(),  # the file's own
)

__all__ = ["SUITES", "OpenSuite", "SplitData", "Suite", "open_suite", "suite_ref"]


@dataclass(frozen=True)
class OpenSuite:
    """A suite built from a reference: its canonical label (names results), the suite, whether to project, and the
    fingerprint of its data files ("" for embedded data), which results record beside the label."""

    label: str
    suite: Suite
    project: bool

    @functools.cached_property
    def fingerprint(self) -> str:
        """Taken on first use: it may read index files or list every image."""
        take = getattr(self.suite, "fingerprint", None)
        return take() if take is not None else ""


def is_image_suite(name: str) -> bool:
    """Whether a registered suite holds images (it needs an encoder and a data root) rather than feature vectors."""
    return hasattr(SUITES.entry(name).factory, "images")


def suite_ref(text: str) -> tuple[Ref, bool]:
    """A suite reference's canonical form without the generic option ``project``, and that option. Checks the name
    and options without loading the suite."""
    ref = Ref.parse(text)
    options = dict(ref.options)
    project = coerce_option(options.pop("project", "false"), bool, f"option 'project' of suite {ref.name!r}")
    return SUITES.canonical(Ref(ref.name, options)), project


def portable_label(ref: Ref) -> Ref:
    """The reference as results name it, free of machine paths: a suite with its own folder name under the data root
    is named by that alone, a generic one (``folder``, ``idx``) by the last component of its ``root``, and a file
    (``features``) by its name. The data fingerprint, stored beside the label, tells different data under one name
    apart."""
    options = dict(ref.options)
    root = options.pop("root", "")
    if root and not SUITES.entry(ref.name).attribute("default_dir", ""):
        options["root"] = Path(root).name
    if "path" in options:  # a file of features: its name
        options["path"] = Path(options["path"]).name
    return Ref(portable_name(ref.name), options)


def open_suite(text: str, settings: FeatureSettings | None = None) -> OpenSuite:
    """Open a suite reference. An image suite is read through ``settings.encoder`` (default ``pixels``) and the
    feature cache; its label names the encoder too, e.g. ``cub:preset=frn [pixels]``, so features never mix."""
    inner, project = suite_ref(text)
    named = portable_label(inner)
    label = str(Ref(named.name, {**named.options, "project": "true"})) if project else str(named)
    if not is_image_suite(inner.name):
        return OpenSuite(label=label, suite=SUITES.build(inner), project=project)

    from gpicl_bench.features import EncodedSuite, FeatureSettings  # here: the feature cache reads suites
    from gpicl_bench.suites.images import data_root, resolve_root

    settings = settings or FeatureSettings()
    encoder = encoder_ref(settings.encoder)
    default_dir = SUITES.entry(inner.name).attribute("default_dir", "")
    root = resolve_root(inner.name, inner.options.get("root"), data_root(settings.data_root), default_dir)
    images = SUITES.build(Ref(inner.name, {**inner.options, "root": str(root)}))
    label = f"{label} [{encoder_label(encoder)}]"
    return OpenSuite(label=label, suite=EncodedSuite(label, images, encoder, settings), project=project)
