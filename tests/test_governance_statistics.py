"""The validation tests against scipy, scikit-learn and direct computations on raw data, to 1e-9,
with their edge cases: a grade without defaults, a grade without obligors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from riskudf.governance import statistics as g

TOL = 1e-9


def test_jeffreys_interval_and_test_are_the_beta_posterior() -> None:
    lower, upper = g.jeffreys_interval(7, 120)
    assert lower == pytest.approx(stats.beta.ppf(0.025, 7.5, 113.5), abs=TOL)
    assert upper == pytest.approx(stats.beta.ppf(0.975, 7.5, 113.5), abs=TOL)
    # A sample: the posterior mass below the PD is the one-sided p-value.
    draws = np.random.default_rng(1).beta(7.5, 113.5, 200_000)
    assert g.jeffreys_pvalue(7, 120, 0.04) == pytest.approx(np.mean(draws <= 0.04), abs=0.005)
    assert g.jeffreys_pvalue(30, 120, 0.04) < 1e-6
    assert lower < 7 / 120 < upper


@pytest.mark.parametrize(("defaults", "n", "pd"), [(7, 120, 0.04), (0, 80, 0.01), (3, 3, 0.2)])
def test_jeffreys_and_binomial_match_scipy(defaults: int, n: int, pd: float) -> None:
    jeffreys = g.jeffreys_test(defaults, n, pd)
    binomial = g.binomial_test(defaults, n, pd)
    posterior = stats.beta.cdf(pd, defaults + 0.5, n - defaults + 0.5)
    assert jeffreys == pytest.approx(posterior, abs=TOL)
    reference = stats.binomtest(defaults, n, pd, alternative="greater").pvalue
    assert binomial == pytest.approx(reference, abs=TOL)


def test_a_grade_without_defaults_passes_and_one_without_obligors_is_not_tested() -> None:
    assert g.binomial_test(0, 50, 0.02) == 1.0
    assert g.jeffreys_test(0, 50, 0.02) == pytest.approx(stats.beta.cdf(0.02, 0.5, 50.5), abs=TOL)
    assert g.jeffreys_test(0, 0, 0.02) is None
    assert g.binomial_test(0, 0, 0.02) is None


def _placement_reference(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong standard error from every defaulter/non-defaulter pair."""
    pos, neg = scores[y == 1], scores[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    var = np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)
    return float(auc), float(math.sqrt(var))


def test_the_auc_change_test_matches_placement_values_on_raw_grades() -> None:
    rng = np.random.default_rng(3)
    grades = rng.integers(1, 9, 600)  # 8 grades, 8 riskiest, many ties
    y = (rng.random(600) < 0.01 * grades**1.3).astype(int)
    defaults = np.bincount(grades[y == 1], minlength=9)[1:]
    non_defaults = np.bincount(grades[y == 0], minlength=9)[1:]
    assert non_defaults[-1] > 0 and defaults.sum() > 5  # the fixture has what it tests
    auc, se = _placement_reference(grades, y)
    result = g.auc_change_test(defaults, non_defaults, initial_auc=0.80)
    assert result is not None
    assert result.auc == pytest.approx(roc_auc_score(y, grades), abs=TOL)
    assert result.auc == pytest.approx(auc, abs=TOL)
    assert result.std_error == pytest.approx(se, abs=TOL)
    assert result.statistic == pytest.approx((0.80 - auc) / se, abs=TOL)
    assert result.pvalue == pytest.approx(1 - stats.norm.cdf((0.80 - auc) / se), abs=TOL)
    # Bins without obligors (grade 9 and 10 here) change nothing.
    padded = g.auc_change_test(
        np.append(defaults, [0, 0]), np.append(non_defaults, [0, 0]), initial_auc=0.80
    )
    assert padded is not None and padded.std_error == pytest.approx(se, abs=TOL)


def test_the_auc_change_test_needs_defaults_and_non_defaults() -> None:
    assert g.auc_change_test(np.array([0, 0, 0]), np.array([5, 4, 3]), 0.8) is None
    assert g.auc_change_test(np.array([2, 1, 0]), np.array([0, 0, 0]), 0.8) is None


def _paired_sums(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple:
    """PlacementSums of two integer scorings as the shadow comparison builds them: placement
    values per score bin from each scoring's counts, then sums over each class's obligors."""
    size = int(max(a.max(), b.max())) + 1
    placed = []
    for scores in (a, b):
        v10, v01 = g.placement_values(
            np.bincount(scores[y == 1], minlength=size), np.bincount(scores[y == 0], minlength=size)
        )
        placed.append((v10[scores], v01[scores]))
    (a10, a01), (b10, b01) = placed

    def sums(mask: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> g.PlacementSums:
        pa, pb = pa[mask], pb[mask]
        return g.PlacementSums(
            int(mask.sum()), pa.sum(), pb.sum(), (pa * pa).sum(), (pb * pb).sum(), (pa * pb).sum()
        )

    return sums(y == 1, a10, b10), sums(y == 0, a01, b01)


def test_the_paired_auc_test_is_delongs_on_every_pair() -> None:
    rng = np.random.default_rng(11)
    n = 800
    risk = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(3.0 - 1.2 * risk))).astype(int)
    # Two correlated scorings on a grid with ties, as PDs binned by the monitoring grid.
    a = np.clip(np.round(20 + 6 * (risk + rng.normal(scale=1.2, size=n))), 0, 40).astype(int)
    b = np.clip(np.round(20 + 6 * (risk + rng.normal(scale=0.7, size=n))), 0, 40).astype(int)
    assert 20 < y.sum() < n - 20
    result = g.paired_auc_test(*_paired_sums(a, b, y))
    assert result is not None
    # The reference: each scoring's kernel over every defaulter/non-defaulter pair.
    pos, neg = y == 1, y == 0

    def kernel(s: np.ndarray) -> np.ndarray:
        return (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])

    ka, kb = kernel(a), kernel(b)
    s10 = np.cov(np.vstack([ka.mean(axis=1), kb.mean(axis=1)]), ddof=1)
    s01 = np.cov(np.vstack([ka.mean(axis=0), kb.mean(axis=0)]), ddof=1)
    contrast = np.array([-1.0, 1.0])
    variance = contrast @ s10 @ contrast / pos.sum() + contrast @ s01 @ contrast / neg.sum()
    difference = kb.mean() - ka.mean()
    assert result.auc_a == pytest.approx(roc_auc_score(y, a), abs=TOL)
    assert result.auc_b == pytest.approx(roc_auc_score(y, b), abs=TOL)
    assert result.difference == pytest.approx(difference, abs=TOL)
    assert result.std_error == pytest.approx(math.sqrt(variance), abs=TOL)
    z = difference / math.sqrt(variance)
    assert result.statistic == pytest.approx(z, abs=TOL)
    assert result.pvalue == pytest.approx(2 * stats.norm.sf(abs(z)), abs=TOL)
    assert result.difference > 0 and result.pvalue < 0.05  # b is the better scoring here


def test_the_paired_auc_test_needs_two_of_each_class_and_two_rankings() -> None:
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0])
    a = np.array([5, 1, 2, 4, 3, 1, 2, 0])
    assert g.paired_auc_test(*_paired_sums(a, a, y)) is None  # the same ranking twice
    assert g.paired_auc_test(*_paired_sums(a, a[::-1].copy(), y)) is not None
    one = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    assert g.paired_auc_test(*_paired_sums(a, a[::-1].copy(), one)) is None


def test_concentration_is_the_herfindahl_index_rescaled() -> None:
    counts = np.array([50, 30, 20, 0])  # a grade without obligors counts as a grade
    result = g.concentration(counts)
    assert result is not None
    shares = counts / counts.sum()
    h = float(np.sum(shares**2))  # the classic Herfindahl index
    assert result.coefficient_of_variation == pytest.approx(math.sqrt(4 * h - 1), abs=TOL)
    assert result.herfindahl == pytest.approx(1 + math.log(h) / math.log(4), abs=TOL)
    even = g.concentration(np.array([5, 5, 5, 5]))
    single = g.concentration(np.array([0, 9, 0, 0]))
    assert even is not None and even.herfindahl == pytest.approx(0.0, abs=TOL)
    assert single is not None and single.herfindahl == pytest.approx(1.0, abs=TOL)
    assert g.concentration(np.zeros(4)) is None


def test_the_herfindahl_test_flags_a_rise_in_concentration() -> None:
    initial, current = np.array([25, 25, 30, 20]), np.array([10, 60, 20, 10])
    cv0 = math.sqrt(4 * np.sum((initial / 100) ** 2) - 1)
    cv = math.sqrt(4 * np.sum((current / 100) ** 2) - 1)
    statistic = math.sqrt(3) * (cv - cv0) / math.sqrt(cv**2 * (0.5 + cv**2))
    result = g.herfindahl_test(current, initial)
    assert result is not None
    assert result[0] == pytest.approx(statistic, abs=TOL)
    assert result[1] == pytest.approx(stats.norm.sf(statistic), abs=TOL)
    assert result[1] < 0.5  # concentration rose
    assert g.herfindahl_test(np.array([5, 5, 5, 5]), initial) == (0.0, 1.0)
    assert g.herfindahl_test(np.zeros(4), initial) is None


def _bandwidths_by_loops(counts: np.ndarray) -> tuple[float, float]:
    """The instructions' sums written out term by term (grades numbered 1..K)."""
    k = len(counts)
    up_num = up_den = low_num = low_den = 0.0
    for i, j in itertools.product(range(1, k + 1), repeat=2):
        n_i = counts[i - 1].sum()
        if n_i == 0 or i == j:
            continue
        p_ij = counts[i - 1, j - 1] / n_i
        reach = max(abs(i - 1), abs(i - k))
        if j > i:
            up_num += abs(i - j) * n_i * p_ij
            up_den += reach * n_i * p_ij
        else:
            low_num += abs(i - j) * n_i * p_ij
            low_den += reach * n_i * p_ij
    return up_num / up_den, low_num / low_den


def test_migration_bandwidths_match_the_sums_written_out() -> None:
    counts = np.array(
        [
            [40, 6, 2, 0],
            [5, 30, 7, 1],
            [0, 0, 0, 0],  # a grade without obligors at the start
            [0, 1, 3, 20],
        ]
    )
    upper, lower = g.migration_bandwidths(counts)
    reference = _bandwidths_by_loops(counts)
    assert upper == pytest.approx(reference[0], abs=TOL)
    assert lower == pytest.approx(reference[1], abs=TOL)
    assert g.migration_bandwidths(np.diag([4, 5, 6])) == (None, None)
    with pytest.raises(ValueError, match="square"):
        g.migration_bandwidths(np.ones((2, 3)))


def test_traffic_lights() -> None:
    assert g.colour_of_pvalue(0.2, yellow_below=0.05, red_below=0.01) == g.GREEN
    assert g.colour_of_pvalue(0.03, yellow_below=0.05, red_below=0.01) == g.YELLOW
    assert g.colour_of_pvalue(0.001, yellow_below=0.05, red_below=0.01) == g.RED
    assert g.colour_of_pvalue(None, yellow_below=0.05, red_below=0.01) == g.NOT_ASSESSED
    assert g.colour_of_value(0.3, yellow_above=0.2, red_above=0.4) == g.YELLOW
    assert g.colour_of_value(0.5, yellow_above=0.2, red_above=0.4) == g.RED
