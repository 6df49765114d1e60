"""Confidence intervals, paired tests and Holm's adjustment against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gpicl_bench.stats import holm, mean_interval, noninferiority_p, paired_difference


def test_interval_is_student_t() -> None:
    """The half-width is t(0.975, n−1)·sd/√n, computed here independently."""
    values = np.array([0.5, 0.7, 0.9, 0.6, 0.8])
    interval = mean_interval(values)
    expected = 2.7764451051977987 * values.std(ddof=1) / np.sqrt(5)
    assert interval.mean == pytest.approx(0.7)
    assert interval.half_width == pytest.approx(expected)


def test_interval_approaches_field_convention_for_many_episodes() -> None:
    """With 10,000 episodes the interval is the field's 1.96·sd/√n to within 0.1%."""
    values = np.random.default_rng(0).uniform(size=10_000)
    interval = mean_interval(values)
    field = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert interval.half_width == pytest.approx(field, rel=1e-3)


def test_paired_t_matches_scipy_and_sign() -> None:
    """Difference is a − b; the p-value is scipy's two-sided paired t-test."""
    rng = np.random.default_rng(1)
    b = rng.uniform(size=200)
    a = b + 0.02 + rng.normal(scale=0.05, size=200)
    result = paired_difference(a, b, "t")
    assert result.difference.mean == pytest.approx((a - b).mean())
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result.p_value < 0.01
    assert paired_difference(b, a).difference.mean == pytest.approx(-(a - b).mean())


def test_wilcoxon_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=100), rng.uniform(size=100)
    result = paired_difference(a, b, "wilcoxon")
    assert result.p_value == pytest.approx(stats.wilcoxon(a - b, zero_method="zsplit").pvalue)


def test_identical_learners_have_p_one() -> None:
    """Two learners with the same per-episode accuracy show no evidence of difference (not NaN)."""
    a = np.array([0.2, 0.4, 0.4, 0.9])
    result = paired_difference(a, a.copy())
    assert result.p_value == 1.0
    assert result.difference.mean == 0.0


def test_holm_adjustment() -> None:
    """Holm: sorted p·(m−rank), made monotone, capped at one."""
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_noninferiority_is_a_one_sided_test_of_the_shifted_difference() -> None:
    """p = P(T ≥ (mean(a − b) + margin) / se) under n − 1 degrees of freedom, computed here from the definition."""
    rng = np.random.default_rng(4)
    b = rng.uniform(0.6, 1.0, 2000)
    a = np.clip(b - 0.003 + rng.normal(0, 0.05, 2000), 0, 1)  # a trails b by about 0.3 points
    diff = a - b
    for margin in (0.0, 0.005, 0.01):
        t = (diff.mean() + margin) / (diff.std(ddof=1) / np.sqrt(diff.size))
        assert noninferiority_p(a, b, margin) == pytest.approx(stats.t.sf(t, diff.size - 1), rel=1e-9)
    assert noninferiority_p(a, b, 0.0) > 0.5  # a is not better than b ...
    assert noninferiority_p(a, b, 0.01) < 0.01  # ... but it is no worse by a point
    assert noninferiority_p(a, b, 0.01, "wilcoxon") < 0.01
