"""Image suites as feature suites: images decoded in parallel, encoded in batches, and the features cached in HDF5.

A cache entry holds the features of one (suite, split, encoder) — the suite label carries its preset and crop, the
encoder reference its model, weights source (a pretrained tag, ``pretrained=none`` with its seed, or a local file by
its content digest) and options — and the fingerprint of the data. The entry's file name is a digest of all that, so
a change of any part is a different entry. The key also records the versions of the libraries the features depend on
(torch, Pillow, the encoder's library): an entry made with other versions — another transform, another
initialisation — is reported and rebuilt, as is one whose checksum does not match; neither is ever trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from gpicl_bench import __version__
from gpicl_bench.encoders import ENCODERS, library_versions
from gpicl_bench.encoders.base import Encoder
from gpicl_bench.encoders.weights import weights_digest
from gpicl_bench.errors import UserError
from gpicl_bench.registry import Ref
from gpicl_bench.suites.base import SplitData
from gpicl_bench.suites.images import ImageItem, ImageSplit, ImageSuite

FORMAT_NAME = "gpicl-bench-features"
FORMAT_VERSION = 2
CACHE_VARIABLE = "GPICL_BENCH_CACHE"

log = logging.getLogger(__name__)

# Called while encoding with (what is being encoded, images done, images in all).
EncodeProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FeatureSettings:
    """How image suites become features: the encoder, where data and cache live, and how extraction runs."""

    encoder: str = "pixels"
    data_root: str = ""
    cache_dir: str = ""
    device: str = "cpu"
    workers: int = 0  # image-decoding threads; 0 = up to 8, one per CPU core
    batch_size: int = 128
    skip_bad_images: bool = False
    on_progress: EncodeProgress | None = dataclasses.field(default=None, compare=False)


def cache_directory(explicit: str) -> Path:
    """The cache folder: the given one, else ``$GPICL_BENCH_CACHE``, else ``$XDG_CACHE_HOME/gpicl-bench``; a file in
    its place is a user error."""
    if explicit:
        folder = Path(explicit).expanduser()
    elif os.environ.get(CACHE_VARIABLE):
        folder = Path(os.environ[CACHE_VARIABLE]).expanduser()
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpicl-bench"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the feature cache {folder} is a file, not a folder; give a folder as --cache-dir")
    return folder


def encoder_key(ref: Ref) -> dict[str, str]:
    """The encoder's options as the cache sees them: a local ``weights`` file by its content digest, not its path."""
    options = dict(ref.options)
    weights = options.pop("weights", "")
    if weights:
        options["weights_sha256"] = weights_digest(weights)
    return {"name": ref.name, **options}


class EncodedSuite:
    """An image suite seen through an encoder: ``load(split)`` gives features, from the cache when it can."""

    def __init__(self, label: str, images: ImageSuite, encoder: Ref, settings: FeatureSettings) -> None:
        self.label = label
        self.images = images
        self.encoder_ref = encoder
        self.settings = settings
        self.splits = images.splits

    @functools.cached_property
    def _fingerprint(self) -> str:
        return self.images.fingerprint()

    def fingerprint(self) -> str:
        """The data's fingerprint, taken once per suite (it may list every image file)."""
        return self._fingerprint

    def cache_key(self, split: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "suite": self.label,
            "split": split,
            "encoder": encoder_key(self.encoder_ref),
            "data": self._fingerprint,
            "skip_bad_images": self.settings.skip_bad_images,
            "versions": library_versions(self.encoder_ref),
        }

    def cache_path(self, split: str) -> Path:
        return self._path(self.cache_key(split))

    def _path(self, key: dict[str, Any]) -> Path:
        """Named by what the features are of; the library versions stay out of the name, so an entry made with
        other versions is found, reported and rebuilt in place."""
        what = {name: value for name, value in key.items() if name != "versions"}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]
        readable = re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{self.label}-{key['split']}").strip("_")[:80]
        return cache_directory(self.settings.cache_dir) / f"{readable}-{digest}.h5"

    def load(self, split: str) -> SplitData:
        key = self.cache_key(split)
        path = self._path(key)
        data = read_entry(path, key)
        if data is None:
            images = self.images.images(split)  # checks the split before any encoder is built
            encoder = ENCODERS.build(self.encoder_ref)
            data, identity = extract(images, encoder, f"{self.label} {split}", self.settings)
            write_entry(path, key, data, identity)
        return data


def extract(
    images: ImageSplit, encoder: Encoder, description: str, settings: FeatureSettings
) -> tuple[SplitData, dict[str, Any]]:
    """Decode and prepare images in worker threads, encode them in batches on the device (bf16 autocast on CUDA)."""
    device = torch.device(settings.device)
    network = encoder.network().to(device).eval()
    workers = settings.workers or min(8, os.cpu_count() or 1)
    prepare = functools.partial(_prepare, encoder, settings.skip_bad_images)
    chunks, kept = [], []
    total = len(images.items)
    if settings.on_progress is not None:
        settings.on_progress(description, 0, total)
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, total, settings.batch_size):
            batch_items = images.items[start : start + settings.batch_size]
            prepared = list(pool.map(prepare, batch_items))
            good = [i for i, tensor in enumerate(prepared) if tensor is not None]
            kept.extend(start + i for i in good)
            if good:
                inputs = torch.stack([prepared[i] for i in good]).to(device)
                with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
                    chunks.append(network(inputs).float().flatten(1).cpu())
            if settings.on_progress is not None:
                settings.on_progress(description, min(start + settings.batch_size, total), total)
    if not chunks:
        raise UserError(f"{description}: no readable images")
    if len(kept) < total:
        log.warning("%s: skipped %d unreadable image(s)", description, total - len(kept))
    labels = torch.from_numpy(images.labels[np.asarray(kept)].astype(np.int64))
    return SplitData(torch.cat(chunks), labels, images.class_names), encoder.identity()


def _prepare(encoder: Encoder, skip_bad: bool, item: ImageItem) -> torch.Tensor | None:
    try:
        return encoder.prepare(item.open())
    except UserError as error:
        if not skip_bad:
            raise
        log.warning("skipping: %s", error)
        return None


def _checksum(features: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(features).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def read_entry(path: Path, key: dict[str, Any]) -> SplitData | None:
    """A cache entry's data if it exists, matches ``key`` and passes its checksum; a stale or corrupt one is
    reported and ignored (it will be rebuilt)."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as file:
            stored_key = json.loads(file.attrs["key"])
            features, labels = file["features"][()], file["labels"][()]
            class_names = tuple(name.decode() if isinstance(name, bytes) else name for name in file["class_names"][()])
            checksum = file.attrs["checksum"]
    except (OSError, KeyError, ValueError, TypeError) as error:
        log.warning("feature cache entry %s is unreadable (%s); rebuilding it", path, error)
        return None
    if stored_key != key:
        changed = sorted(name for name in key.keys() | stored_key.keys() if key.get(name) != stored_key.get(name))
        made_with = f" (made with {stored_key.get('versions')}, now {key['versions']})" if "versions" in changed else ""
        log.warning("feature cache entry %s is stale: %s changed%s; rebuilding it", path, ", ".join(changed), made_with)
        return None
    if checksum != _checksum(features, labels):
        log.warning("feature cache entry %s is corrupt (checksum mismatch); rebuilding it", path)
        return None
    return SplitData(torch.from_numpy(features), torch.from_numpy(labels), class_names)


def write_entry(path: Path, key: dict[str, Any], data: SplitData, identity: dict[str, Any]) -> None:
    """Write a cache entry atomically (a temporary file, then a rename)."""
    features, labels = data.features.numpy(), data.labels.numpy()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(temporary, "w") as file:
            file.attrs.update(
                {
                    "format": FORMAT_NAME,
                    "key": json.dumps(key, sort_keys=True),
                    "encoder_identity": json.dumps(identity, sort_keys=True),
                    "checksum": _checksum(features, labels),
                    "package_version": __version__,
                }
            )
            file.create_dataset("features", data=features)
            file.create_dataset("labels", data=labels)
            file.create_dataset("class_names", data=list(data.class_names), dtype=h5py.string_dtype())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write the feature cache entry {path}: {error.strerror or error}") from None
