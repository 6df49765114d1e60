"""Confidence intervals and paired tests over per-episode accuracies.

Intervals are Student-t 95% intervals, mean ± t(0.975, n−1)·sd/√n; for the usual 600–10,000 episodes this is the
field's 1.96·sd/√n (CD-FSL, CAML) to three decimals. Paired tests work on per-episode differences, which is valid
because every learner in a run sees the very same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

PairedTest = Literal["t", "wilcoxon"]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its 95% confidence interval."""

    mean: float
    half_width: float
    n: int


def mean_interval(values: np.ndarray) -> Interval:
    """The mean of ``values`` with its Student-t 95% confidence half-width (0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    if n == 1:
        return Interval(float(values[0]), 0.0, 1)
    sem = values.std(ddof=1) / np.sqrt(n)
    return Interval(float(values.mean()), float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sem), n)


@dataclass(frozen=True)
class Band:
    """Lower and upper 95% bounds, elementwise."""

    low: np.ndarray
    high: np.ndarray


def proportion_interval(share: np.ndarray, n: int) -> Band:
    """Wilson score 95% intervals of proportions, each observed as ``share`` of ``n`` independent trials (e.g. the
    episodes that predicted one position of a sequence right). Unlike share ± 1.96·√(share(1−share)/n), they stay
    inside [0, 1] and do not collapse to a point at 0% or 100%."""
    share = np.asarray(share, dtype=np.float64)
    z = float(scipy_stats.norm.ppf(0.5 + CONFIDENCE / 2))
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    return Band(centre - half, centre + half)


@dataclass(frozen=True)
class PairedResult:
    """Learner A minus learner B on the same episodes: mean difference, its 95% CI half-width and a p-value."""

    difference: Interval
    p_value: float
    test: PairedTest


def paired_difference(a: np.ndarray, b: np.ndarray, test: PairedTest = "t") -> PairedResult:
    """Compare two learners' accuracies on the same episodes (two-sided paired t-test or Wilcoxon signed-rank).

    Identical results give p = 1 (no evidence of a difference) rather than the undefined value of the raw tests.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    diff = a - b
    if diff.size < 2 or np.all(diff == diff[0]):
        p = 1.0 if np.all(diff == 0) or diff.size < 2 else 0.0
        return PairedResult(mean_interval(diff), p, test)
    if test == "t":
        p = float(scipy_stats.ttest_rel(a, b).pvalue)
    elif test == "wilcoxon":
        p = float(scipy_stats.wilcoxon(diff, zero_method="zsplit").pvalue)
    else:
        raise ValueError(f"unknown paired test {test!r}")
    return PairedResult(mean_interval(diff), p, test)


def noninferiority_p(a: np.ndarray, b: np.ndarray, margin: float, test: PairedTest = "t") -> float:
    """One-sided p-value for "a is at least as good as b, up to ``margin``": H0 mean(a − b) ≤ −margin against
    H1 mean(a − b) > −margin (paired t-test, or Wilcoxon signed-rank on the shifted differences). With margin 0 it is
    the one-sided test of superiority; a small p supports the claim that a is no worse than b by the margin."""
    shifted = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + margin
    if shifted.size < 2 or np.all(shifted == shifted[0]):
        return 0.0 if shifted.size and shifted[0] > 0 else 1.0
    if test == "t":
        return float(scipy_stats.ttest_1samp(shifted, 0.0, alternative="greater").pvalue)
    if test == "wilcoxon":
        return float(scipy_stats.wilcoxon(shifted, zero_method="zsplit", alternative="greater").pvalue)
    raise ValueError(f"unknown paired test {test!r}")


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control over all pairs of one setting)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
