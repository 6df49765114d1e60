"""What a suite provides: per split, a feature matrix and integer labels, plus class names for reports.

Importing it imports neither torch nor numpy: the suite registry (and with it the command line's start-up) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gpicl_bench.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor


@dataclass(frozen=True)
class SplitData:
    """One split of a suite: features [n, d] float32, labels [n] int64, and a name per label value."""

    features: Tensor
    labels: Tensor
    class_names: tuple[str, ...]

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


class Suite(Protocol):
    """A few-shot suite: named splits of labelled examples. Options are keyword-only constructor arguments."""

    splits: tuple[str, ...]

    def load(self, split: str) -> SplitData:
        """The split's data on the CPU; unknown splits are a user error."""
        ...


def split_by_class(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split rows per class by a fixed seeded shuffle: each split takes its fraction of every class (rounded), the
    last split the rest. Returns sorted row indices per split."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(fractions)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for name in names[:-1]:
            end = start + round(len(rows) * fractions[name])
            parts[name].append(rows[start:end])
            start = end
        parts[names[-1]].append(rows[start:])
    return {name: np.sort(np.concatenate(rows)) for name, rows in parts.items()}


def standardised_split(
    images: np.ndarray,
    labels: np.ndarray,
    rows: dict[str, np.ndarray],
    split: str,
    suite: str,
    class_names: tuple[str, ...],
) -> SplitData:
    """One split with pixels z-normalised by the mean and std of all ``train`` pixels (GPICL's preprocessing)."""
    import numpy as np
    import torch

    if split not in rows:
        raise UserError(f"{suite} has no split {split!r}; splits: {', '.join(rows)}")
    train = images[rows["train"]]
    mean, std = float(train.mean()), float(train.std())
    chosen = rows[split]
    features = (images[chosen].astype(np.float32) - mean) / std
    return SplitData(torch.from_numpy(features), torch.from_numpy(labels[chosen].astype(np.int64)), class_names)
