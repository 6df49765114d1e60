"""The IDX (MNIST-family) suite on files the tests write in the real layout, gzipped and not."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.suites import open_suite
from gpicl_bench.suites.idx import read_idx


def write_idx(path: Path, data: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, data.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in data.shape)
    payload = header + data.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def class_images(labels: np.ndarray, size: int = 28) -> np.ndarray:
    """Images whose content depends on the class: a bright horizontal band at a class-specific row."""
    images = np.zeros((len(labels), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 200 + label
    return images


def make_dataset(root: Path, prefix: str = "", compress: bool = False, per_class: int = 30) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("t10k", per_class // 2)):
        labels = rng.permutation(np.repeat(np.arange(10), count))
        write_idx(root / f"{prefix}{part}-images-idx3-ubyte", class_images(labels), compress)
        write_idx(root / f"{prefix}{part}-labels-idx1-ubyte", labels, compress)


@pytest.mark.parametrize("compress", [False, True])
def test_splits_sizes_and_resize(tmp_path: Path, compress: bool) -> None:
    make_dataset(tmp_path / "mnist", compress=compress)
    suite = open_suite(f"idx:root={tmp_path / 'mnist'},resize=8").suite
    train, val, test = (suite.load(s) for s in ("train", "val", "test"))
    assert train.features.shape == (270, 64) and val.features.shape == (30, 64) and test.features.shape == (150, 64)
    assert np.bincount(val.labels.numpy()).tolist() == [3] * 10
    assert abs(float(train.features.mean())) < 1e-4 and abs(float(train.features.std()) - 1) < 1e-3
    full = open_suite(f"idx:root={tmp_path / 'mnist'}").suite.load("test")
    assert full.features.shape == (150, 784)


def test_labels_stay_aligned_with_images(tmp_path: Path) -> None:
    """Images whose content encodes the class are classified perfectly by protonet: labels match images."""
    make_dataset(tmp_path / "m", prefix="emnist-letters-")
    data = open_suite(f"idx:root={tmp_path / 'm'},prefix=emnist-letters-,resize=8").suite.load("test")
    batch = EpisodeSampler(data.labels, EpisodeShape(5, 1, 5), seed=0).sample(torch.arange(50))
    logits = ProtoNet().predict(
        data.features[batch.support_index], batch.support_labels, data.features[batch.query_index], 5
    )
    assert (logits.argmax(-1) == batch.query_labels).all()


def test_transpose_swaps_image_axes(tmp_path: Path) -> None:
    make_dataset(tmp_path / "e")
    plain = open_suite(f"idx:root={tmp_path / 'e'}").suite.load("test").features.reshape(-1, 28, 28)
    flipped = open_suite(f"idx:root={tmp_path / 'e'},transpose").suite.load("test").features.reshape(-1, 28, 28)
    assert np.allclose(plain.numpy(), flipped.transpose(1, 2).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "t10k-labels-idx1-ubyte").unlink(), "no t10k-labels-idx1-ubyte"),
        (lambda root: (root / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 5), "not an IDX"),
        (
            lambda root: (root / "train-images-idx3-ubyte").write_bytes(
                (root / "train-images-idx3-ubyte").read_bytes()[:-10]
            ),
            "truncated",
        ),
        (
            lambda root: (root / "train-labels-idx1-ubyte").write_bytes(
                b"\0\0\x08\x01" + (5).to_bytes(4, "big") + b"\0" * 5
            ),
            "images but 5 labels",
        ),
    ],
)
def test_damaged_files_are_user_errors(tmp_path: Path, damage, message: str) -> None:
    root = tmp_path / "d"
    make_dataset(root)
    damage(root)
    with pytest.raises(UserError, match=message):
        open_suite(f"idx:root={root}").suite.load("train")


def test_missing_directory_and_root(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no IDX directory"):
        open_suite(f"idx:root={tmp_path / 'nowhere'}").suite.load("train")
    with pytest.raises(UserError, match="root=DIR"):
        open_suite("idx")


def test_read_idx_round_trip(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", data, compress=False)
    assert np.array_equal(read_idx(tmp_path / "x", 3), data)
