"""scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes): the embedded suite, no download.

Ten classes are too few for class-disjoint splits, so the images of every class are split by a fixed seeded shuffle:
50% ``train`` (meta-training), 20% ``val`` (held-out checks during meta-training) and 30% ``test`` (evaluation).
Pixels (0–16) are z-normalised with the mean and standard deviation of all ``train`` pixels, as in GPICL.
"""

from __future__ import annotations

import functools

import numpy as np

from gpicl_bench.suites.base import SplitData, split_by_class, standardised_split

SPLIT_FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.3}
SPLIT_SEED = 20221209  # fixed forever: changing it changes every digits result


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.data.astype(np.float32), data.target.astype(np.int64)
    return images, labels, split_by_class(labels, SPLIT_FRACTIONS, SPLIT_SEED)


class Digits:
    """The embedded digits suite (8×8 = 64 features)."""

    splits = tuple(SPLIT_FRACTIONS)

    def load(self, split: str) -> SplitData:
        images, labels, rows = _digits()
        return standardised_split(images, labels, rows, split, "digits", tuple(str(d) for d in range(10)))
