"""scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes): the embedded suite, no download.

Ten classes are too few for class-disjoint splits, so the images of every class are split by a fixed seeded shuffle:
50% ``train`` (meta-training), 20% ``val`` (held-out checks during meta-training) and 30% ``test`` (evaluation).
Pixels (0–16) are z-normalised with the mean and standard deviation of all ``train`` pixels, as in GPICL.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from gpicl_bench.errors import UserError
from gpicl_bench.suites.base import SplitData

SPLIT_FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.3}
SPLIT_SEED = 20221209  # fixed forever: changing it changes every digits result


@functools.cache
def _split_rows() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.data.astype(np.float32), data.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_FRACTIONS}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_train = round(len(rows) * SPLIT_FRACTIONS["train"])
        n_val = round(len(rows) * SPLIT_FRACTIONS["val"])
        parts["train"].append(rows[:n_train])
        parts["val"].append(rows[n_train : n_train + n_val])
        parts["test"].append(rows[n_train + n_val :])
    return images, labels, {name: np.sort(np.concatenate(rows)) for name, rows in parts.items()}


class Digits:
    """The embedded digits suite (8×8 = 64 features)."""

    splits = tuple(SPLIT_FRACTIONS)

    def load(self, split: str) -> SplitData:
        if split not in SPLIT_FRACTIONS:
            raise UserError(f"digits has no split {split!r}; splits: {', '.join(SPLIT_FRACTIONS)}")
        images, labels, rows = _split_rows()
        train = images[rows["train"]]
        mean, std = train.mean(), train.std()
        chosen = rows[split]
        return SplitData(
            features=torch.from_numpy((images[chosen] - mean) / std),
            labels=torch.from_numpy(labels[chosen]),
            class_names=tuple(str(d) for d in range(10)),
        )
