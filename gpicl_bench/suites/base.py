"""What a suite provides: per split, a feature matrix and integer labels, plus class names for reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
