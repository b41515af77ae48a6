"""Monitoring metrics as pure functions of small aggregates: histograms, counts, per-bin sums.

Spark reduces the portfolio to these aggregates on the executors (``riskudf.monitoring.aggregate``);
the functions here never see a row. Each is checked against numpy, scipy or scikit-learn on raw
data in the tests.

Binning conventions:

* A numeric column is counted in *fine bins* of a fixed grid (:class:`Grid`). Integer-valued
  columns (token, chunk and filing counts, report age in days) get one bin per value, so their
  histograms are exact. ``pd`` gets 10,000 equal bins of width 1e-4 on [0, 1]; statistics computed
  from those carry an error bound (:func:`ks_error_bound`, :attr:`Grid.wasserstein_error_bound`,
  :func:`auc_error_bound`).
* PSI and JS use *coarse bins*: the reference's deciles (:func:`decile_edges`), on the fine grid,
  so a coarse bin is an exact union of fine bins. A value x falls in coarse bin i when
  ``edges[i-1] <= x < edges[i]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

# Share given to an empty bin in PSI (no renormalisation): ln(a/e) stays finite, and one empty
# bin against a 10 % bin adds (0.1 - 1e-4) * ln(0.1 / 1e-4), about 0.69.
PSI_EPSILON = 1e-4
# Log-loss clips PDs to [eps, 1 - eps] with the float64 machine epsilon, as scikit-learn does.
LOG_LOSS_EPSILON = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Grid:
    """Fine bins: bin k covers ``[lo + k * width, lo + (k + 1) * width)``.

    ``exact``: integer-valued column with width 1, one bin per value (no binning error).
    ``bins``: number of bins for a bounded column (the last bin is closed), else None.
    """

    lo: float
    width: float
    exact: bool
    bins: int | None = None

    def lower(self, index: np.ndarray) -> np.ndarray:
        return self.lo + np.asarray(index, dtype=np.float64) * self.width

    def point(self, index: np.ndarray) -> np.ndarray:
        """Where a bin's mass sits for moments and distances: the value, or the bin middle."""
        return self.lower(index) + (0.0 if self.exact else self.width / 2)

    @property
    def wasserstein_error_bound(self) -> float:
        """Moving each distribution's mass to its bin middle moves it at most width / 2."""
        return 0.0 if self.exact else self.width

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value (numpy mirror of the Spark expression in ``aggregate``)."""
        index = np.floor((np.asarray(values, dtype=np.float64) - self.lo) / self.width)
        if self.bins is not None:
            index = np.clip(index, 0, self.bins - 1)
        return index.astype(np.int64)


PD_GRID = Grid(lo=0.0, width=1e-4, exact=False, bins=10_000)
COUNT_GRID = Grid(lo=0.0, width=1.0, exact=True)


@dataclass(frozen=True)
class Histogram:
    """Counts per fine bin index (sorted, unique), with the grid they live on."""

    grid: Grid
    index: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_mapping(cls, grid: Grid, counts: Mapping[int, int]) -> Histogram:
        keys = np.array(sorted(counts), dtype=np.int64)
        return cls(grid, keys, np.array([counts[k] for k in keys.tolist()], dtype=np.float64))

    @classmethod
    def from_values(cls, grid: Grid, values: np.ndarray) -> Histogram:
        index, counts = np.unique(grid.index_of(values), return_counts=True)
        return cls(grid, index.astype(np.int64), counts.astype(np.float64))

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def mean(self) -> float:
        return float(np.average(self.grid.point(self.index), weights=self.counts))


def align(a: Histogram, b: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The union of both histograms' bins, sorted, with each one's counts on it."""
    if a.grid != b.grid:
        raise ValueError(f"histograms on different grids: {a.grid} and {b.grid}")
    index = np.union1d(a.index, b.index)
    counts_a = np.zeros(len(index))
    counts_b = np.zeros(len(index))
    counts_a[np.searchsorted(index, a.index)] = a.counts
    counts_b[np.searchsorted(index, b.index)] = b.counts
    return index, counts_a, counts_b


# --- coarse bins ---------------------------------------------------------------------------


def decile_edges(hist: Histogram, n_bins: int = 10) -> np.ndarray:
    """Interior edges splitting the histogram into about ``n_bins`` equally filled bins.

    Edge j is the upper bound of the first fine bin whose cumulative share reaches j / n_bins
    (a lower bin holds at least j / n_bins). Edges are unique and leave no coarse bin empty,
    so ties can make fewer than ``n_bins`` bins.
    """
    if hist.total <= 0:
        return np.array([], dtype=np.float64)
    cumulative = np.cumsum(hist.counts) / hist.total
    targets = np.arange(1, n_bins) / n_bins
    positions = np.searchsorted(cumulative, targets - 1e-12, side="left")
    positions = np.unique(np.minimum(positions, len(hist.index) - 1))
    positions = positions[positions < len(hist.index) - 1]
    return np.asarray(hist.grid.lower(hist.index[positions] + 1), dtype=np.float64)


def coarse_counts(hist: Histogram, edges: np.ndarray) -> np.ndarray:
    """Counts per coarse bin (``len(edges) + 1`` bins) of a fine histogram.

    Edges lie on fine-bin bounds, so each fine bin (placed by its middle) falls in one coarse bin.
    """
    middle = hist.grid.lower(hist.index) + hist.grid.width / 2
    coarse = np.searchsorted(edges, middle, side="right")
    return np.bincount(coarse, weights=hist.counts, minlength=len(edges) + 1)


# --- drift ---------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected`` counts on the same bins.

    ``sum((a - e) * ln(a / e))`` over shares; an empty bin's share is set to ``epsilon``.
    """
    e = np.maximum(np.asarray(expected, float) / np.sum(expected), epsilon)
    a = np.maximum(np.asarray(actual, float) / np.sum(actual), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence), base 2: 0 to 1."""
    value = float(jensenshannon(np.asarray(p, float), np.asarray(q, float), base=2))
    return 0.0 if math.isnan(value) else value


def ks_two_sample(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    *,
    n_a: float | None = None,
    n_b: float | None = None,
) -> tuple[float, float]:
    """Two-sample KS statistic and asymptotic two-sided p-value from counts on sorted bins.

    The same as ``scipy.stats.ks_2samp(a, b, method="asymp")`` when each bin is one value.
    """
    n_a = float(np.sum(counts_a)) if n_a is None else n_a
    n_b = float(np.sum(counts_b)) if n_b is None else n_b
    if n_a == 0 or n_b == 0:
        return float("nan"), float("nan")
    gap = np.abs(np.cumsum(counts_a) / n_a - np.cumsum(counts_b) / n_b)
    statistic = float(np.max(gap, initial=0.0))
    m, n = sorted((n_a, n_b), reverse=True)
    pvalue = float(stats.kstwo.sf(statistic, np.round(m * n / (m + n))))
    return statistic, min(1.0, max(0.0, pvalue))


def ks_error_bound(grid: Grid, counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """Max |D - D exact|: inside a fine bin each CDF moves by at most that bin's share."""
    if grid.exact:
        return 0.0
    shares = np.maximum(counts_a / max(np.sum(counts_a), 1), counts_b / max(np.sum(counts_b), 1))
    return float(np.max(shares, initial=0.0))


def wasserstein(grid: Grid, index: np.ndarray, counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """Earth mover distance between two histograms, mass at each bin's point."""
    points = grid.point(index)
    return float(stats.wasserstein_distance(points, points, counts_a, counts_b))


def chi_squared(counts_a: np.ndarray, counts_b: np.ndarray) -> tuple[float, float]:
    """Chi-squared test of homogeneity of two samples' category counts (no continuity fix)."""
    table = np.vstack([counts_a, counts_b]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


# --- discrimination and calibration ----------------------------------------------------------


def auc_binned(positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC AUC from default and non-default counts on sorted score bins; ties count one half.

    Equals ``sklearn.metrics.roc_auc_score`` when each bin holds one distinct score.
    """
    pos = np.asarray(positives, float)
    neg = np.asarray(negatives, float)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


def auc_error_bound(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Max |AUC - exact AUC|: half the share of default/non-default pairs in one bin."""
    pos = np.asarray(positives, float)
    neg = np.asarray(negatives, float)
    n_pairs = pos.sum() * neg.sum()
    return float(0.5 * np.sum(pos * neg) / n_pairs) if n_pairs else float("nan")


def gini(auc: float) -> float:
    return 2.0 * auc - 1.0


def quantile_groups(counts: np.ndarray, n_groups: int = 10) -> np.ndarray:
    """Group of each sorted bin so that groups hold about equal counts (bins are not split)."""
    counts = np.asarray(counts, float)
    total = counts.sum()
    if total == 0:
        return np.zeros(len(counts), dtype=np.int64)
    # A bin goes to the group of the cumulative count at its middle.
    middle = (np.cumsum(counts) - counts / 2) / total
    return np.minimum((middle * n_groups).astype(np.int64), n_groups - 1)


def hosmer_lemeshow(
    n: np.ndarray, observed: np.ndarray, expected: np.ndarray, *, in_sample: bool = False
) -> tuple[float, float, int]:
    """Hosmer-Lemeshow statistic, p-value and number of groups.

    Per group g with n_g obligors, O_g defaults and E_g = sum of PDs:
    ``sum (O_g - E_g)^2 / (E_g (1 - E_g / n_g))``, chi-squared with G degrees of freedom out
    of sample (a backtest: the PDs were not fitted on these outcomes), G - 2 on the development
    sample (``in_sample``). Empty or degenerate groups (E_g = 0 or E_g = n_g) are left out.
    """
    n = np.asarray(n, float)
    observed = np.asarray(observed, float)
    expected = np.asarray(expected, float)
    keep = (n > 0) & (expected > 0) & (expected < n)
    n, observed, expected = n[keep], observed[keep], expected[keep]
    groups = len(n)
    if groups < 3:
        return float("nan"), float("nan"), groups
    statistic = float(np.sum((observed - expected) ** 2 / (expected * (1 - expected / n))))
    dof = groups - 2 if in_sample else groups
    return statistic, float(stats.chi2.sf(statistic, dof)), groups


# --- fairness ------------------------------------------------------------------------------


def rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def disparate_impact(group_rate: float | None, reference_rate: float | None) -> float | None:
    """Approval-rate ratio of a group to the reference group (four-fifths rule: < 0.8)."""
    if group_rate is None or not reference_rate:
        return None
    return group_rate / reference_rate


def equal_opportunity_difference(
    group_tpr: float | None, reference_tpr: float | None
) -> float | None:
    """Difference of approval rates among non-defaulters, group minus reference."""
    if group_tpr is None or reference_tpr is None:
        return None
    return group_tpr - reference_tpr


def frequent_items(counts: Mapping[str, int], k: int = 10) -> list[tuple[str, int]]:
    """The k most frequent values, ties broken by value."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def nan_to_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def as_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)
