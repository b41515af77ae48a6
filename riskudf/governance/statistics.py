"""The validation tests of the ECB's instructions for reporting the validation results of
internal models (IRB, 2019), as pure functions of small aggregates: counts per grade or score
bin, a migration matrix. Spark reduces the portfolio to these; nothing here sees a row.

Each test returns its statistic and a one-sided p-value; ``None`` where the test is not defined
(a grade without obligors, a sample without defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# --- calibration --------------------------------------------------------------------------


def jeffreys_interval(defaults: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Equal-tailed Jeffreys interval of a default rate: quantiles of Beta(d + 1/2, n - d + 1/2).

    As in the ECB's instructions, the bounds are not clipped to 0 and 1 when d is 0 or n.
    """
    a, b = defaults + 0.5, n - defaults + 0.5
    return float(stats.beta.ppf(alpha / 2, a, b)), float(stats.beta.ppf(1 - alpha / 2, a, b))


def jeffreys_pvalue(defaults: int, n: int, mean_pd: float) -> float:
    """One-sided Jeffreys test of H0 "the PD is not too low": Beta(d + 1/2, n - d + 1/2) CDF at
    the mean PD. A small value says the observed default rate exceeds what the PD predicts.
    """
    return float(stats.beta.cdf(mean_pd, defaults + 0.5, n - defaults + 0.5))


def jeffreys_test(defaults: int, n: int, mean_pd: float) -> float | None:
    """The Jeffreys p-value of a grade or portfolio; None for one without obligors."""
    return jeffreys_pvalue(defaults, n, mean_pd) if n > 0 else None


def binomial_test(defaults: int, n: int, mean_pd: float) -> float | None:
    """One-sided binomial test of H0 "the PD is not too low": P(X >= d) for X ~ Bin(n, PD).
    None for a grade without obligors; 1 when there is no default."""
    if n <= 0:
        return None
    return float(stats.binom.sf(defaults - 1, n, mean_pd))


# --- discrimination -----------------------------------------------------------------------


@dataclass(frozen=True)
class AucChange:
    auc: float  # current AUC
    std_error: float  # s, from the variance of the placement values
    statistic: float  # S = (AUC_initial - AUC_current) / s
    pvalue: float  # 1 - Phi(S): small when the AUC fell significantly


def auc_change_test(
    defaults: np.ndarray, non_defaults: np.ndarray, initial_auc: float
) -> AucChange | None:
    """The supervisor's current-against-initial AUC test on counts per sorted score bin (or
    grade, riskiest last); ties count one half, as the instructions do for grades.

    Placement values: a defaulter in bin k scores V10 = (non-defaulters below k + half those in
    k) / N_nd; a non-defaulter in bin k, V01 = (defaulters above k + half those in k) / N_d.
    s^2 = var(V10) / N_d + var(V01) / N_nd, sample variances (DeLong). None without defaults
    or without non-defaults, or when s is 0.
    """
    pos = np.asarray(defaults, float)
    neg = np.asarray(non_defaults, float)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos < 2 or n_neg < 2:
        return None
    v10, v01 = placement_values(pos, neg)
    auc = float(np.sum(pos * v10) / n_pos)
    s10 = float(np.sum(pos * (v10 - auc) ** 2) / (n_pos - 1))
    s01 = float(np.sum(neg * (v01 - auc) ** 2) / (n_neg - 1))
    std_error = math.sqrt(s10 / n_pos + s01 / n_neg)
    if std_error == 0.0:
        return None
    statistic = (initial_auc - auc) / std_error
    return AucChange(auc, std_error, statistic, float(stats.norm.sf(statistic)))


def placement_values(
    defaults: np.ndarray, non_defaults: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted score bin (riskiest last): V10 of a defaulter in it (the share of
    non-defaulters scored below, ties one half) and V01 of a non-defaulter in it (the share of
    defaulters scored above, ties one half)."""
    pos = np.asarray(defaults, float)
    neg = np.asarray(non_defaults, float)
    n_pos, n_neg = pos.sum(), neg.sum()
    below_neg = np.cumsum(neg) - neg
    above_pos = n_pos - np.cumsum(pos)
    v10 = (below_neg + 0.5 * neg) / n_neg if n_neg else np.full(len(pos), np.nan)
    v01 = (above_pos + 0.5 * pos) / n_pos if n_pos else np.full(len(neg), np.nan)
    return v10, v01


@dataclass(frozen=True)
class PlacementSums:
    """Sums over the obligors of one class (defaulters: V10; non-defaulters: V01) of two
    scorings' placement values a and b: what the paired test needs from Spark."""

    n: int
    a: float
    b: float
    aa: float
    bb: float
    ab: float


@dataclass(frozen=True)
class PairedAuc:
    auc_a: float
    auc_b: float
    difference: float  # auc_b - auc_a
    std_error: float
    statistic: float  # difference / std_error
    pvalue: float  # two-sided: 2 (1 - Phi(|statistic|))


def paired_auc_test(defaulters: PlacementSums, non_defaulters: PlacementSums) -> PairedAuc | None:
    """DeLong's test of two AUCs on the same obligors (DeLong, DeLong and Clarke-Pearson, 1988).

    AUC_m is the mean V10 of scoring m over defaulters; the covariance of the two AUCs is
    S10 / N_d + S01 / N_nd, S10 and S01 the sample covariance matrices of the placement values
    over defaulters and non-defaulters. None with fewer than two of either class, or when the
    difference has no variance (the same ranking twice).
    """
    n_pos, n_neg = defaulters.n, non_defaulters.n
    if n_pos < 2 or n_neg < 2:
        return None

    def cov(s: PlacementSums) -> tuple[float, float, float]:
        m_a, m_b = s.a / s.n, s.b / s.n
        return (
            (s.aa - s.n * m_a * m_a) / (s.n - 1),
            (s.bb - s.n * m_b * m_b) / (s.n - 1),
            (s.ab - s.n * m_a * m_b) / (s.n - 1),
        )

    auc_a, auc_b = defaulters.a / n_pos, defaulters.b / n_pos
    aa10, bb10, ab10 = cov(defaulters)
    aa01, bb01, ab01 = cov(non_defaulters)
    variance = (aa10 + bb10 - 2 * ab10) / n_pos + (aa01 + bb01 - 2 * ab01) / n_neg
    if variance <= 1e-15:
        return None
    std_error = math.sqrt(variance)
    statistic = (auc_b - auc_a) / std_error
    return PairedAuc(
        auc_a, auc_b, auc_b - auc_a, std_error, statistic, float(2 * stats.norm.sf(abs(statistic)))
    )


# --- concentration ------------------------------------------------------------------------


@dataclass(frozen=True)
class Concentration:
    coefficient_of_variation: float  # CV = sqrt(K * sum (R_i - 1/K)^2), R_i the grade's share
    herfindahl: float  # HI = 1 + ln((CV^2 + 1) / K) / ln K: 0 spread evenly, 1 in one grade


def concentration(counts: np.ndarray) -> Concentration | None:
    """Concentration of obligors over K grades (empty grades count); None without obligors."""
    counts = np.asarray(counts, float)
    k, total = len(counts), counts.sum()
    if total <= 0 or k < 2:
        return None
    shares = counts / total
    cv = math.sqrt(k * float(np.sum((shares - 1.0 / k) ** 2)))
    return Concentration(cv, 1.0 + math.log((cv**2 + 1.0) / k) / math.log(k))


def herfindahl_test(current: np.ndarray, initial: np.ndarray) -> tuple[float, float] | None:
    """Test that grade concentration has not risen since the initial validation:
    statistic sqrt(K-1) (CV_cur - CV_init) / sqrt(CV_cur^2 (1/2 + CV_cur^2)), p = 1 - Phi.
    Returns (statistic, p-value); p is 1 when the current grades are spread evenly (CV_cur 0).
    None when either distribution has no obligors or the grade counts differ."""
    now, then = concentration(current), concentration(initial)
    if now is None or then is None or len(current) != len(initial):
        return None
    cv, cv0 = now.coefficient_of_variation, then.coefficient_of_variation
    if cv == 0.0:
        return 0.0, 1.0
    k = len(current)
    statistic = math.sqrt(k - 1) * (cv - cv0) / math.sqrt(cv**2 * (0.5 + cv**2))
    return statistic, float(stats.norm.sf(statistic))


# --- stability ----------------------------------------------------------------------------


def migration_bandwidths(matrix: np.ndarray) -> tuple[float | None, float | None]:
    """Upper and lower matrix weighted bandwidths of a K x K migration matrix of counts (rows:
    grade at the start, columns: grade at the end, grades ordered), as in the instructions:

        MWB_upper = sum_{i<K} sum_{j>i} |i-j| N_i p_ij / M_upper,
        M_upper = sum_{i<K} max(|i-1|, |i-K|) N_i sum_{j>i} p_ij,

    with N_i the obligors starting in grade i and p_ij the share of them ending in j; the lower
    one mirrors it below the diagonal. None for a direction in which nobody migrated.
    """
    counts = np.asarray(matrix, float)
    k = counts.shape[0]
    if counts.shape != (k, k):
        raise ValueError(f"a migration matrix is square, not {counts.shape}")
    rows = counts.sum(axis=1)
    shares = np.divide(counts, rows[:, None], out=np.zeros_like(counts), where=rows[:, None] > 0)
    grade = np.arange(1, k + 1)
    distance = np.abs(grade[:, None] - grade[None, :])
    reach = np.maximum(np.abs(grade - 1), np.abs(grade - k))
    upper_mask = np.triu(np.ones((k, k), bool), 1)
    lower_mask = np.tril(np.ones((k, k), bool), -1)

    def bandwidth(mask: np.ndarray) -> float | None:
        weighted = rows[:, None] * shares * mask
        norm = float(np.sum(reach * weighted.sum(axis=1)))
        return float(np.sum(distance * weighted)) / norm if norm > 0 else None

    return bandwidth(upper_mask), bandwidth(lower_mask)


# --- traffic light ------------------------------------------------------------------------

GREEN, YELLOW, RED, NOT_ASSESSED = "green", "yellow", "red", "not_assessed"


def colour_of_pvalue(pvalue: float | None, *, yellow_below: float, red_below: float) -> str:
    """A test's colour: red under ``red_below``, yellow under ``yellow_below``, else green."""
    if pvalue is None or math.isnan(pvalue):
        return NOT_ASSESSED
    if pvalue < red_below:
        return RED
    return YELLOW if pvalue < yellow_below else GREEN


def colour_of_value(value: float | None, *, yellow_above: float, red_above: float) -> str:
    """A measure's colour where larger is worse (a bandwidth, a Herfindahl index)."""
    if value is None or math.isnan(value):
        return NOT_ASSESSED
    if value > red_above:
        return RED
    return YELLOW if value > yellow_above else GREEN
