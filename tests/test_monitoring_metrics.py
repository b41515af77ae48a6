"""Each monitoring metric from aggregates, against numpy, scipy or scikit-learn on raw data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from riskudf.monitoring import metrics as m
from riskudf.monitoring.metrics import COUNT_GRID, PD_GRID, Histogram

RNG = np.random.default_rng(0)


def test_psi_matches_the_formula_with_epsilon_for_empty_bins() -> None:
    expected = np.array([10, 20, 30, 40, 0])
    actual = np.array([12, 18, 25, 35, 10])
    e = expected / expected.sum()
    a = actual / actual.sum()
    e = np.where(e == 0, 1e-4, e)
    direct = np.sum((a - e) * np.log(a / e))
    assert m.psi(expected, actual) == pytest.approx(direct, rel=1e-12)
    assert m.psi(expected, expected) == 0.0
    assert m.PSI_EPSILON == 1e-4


def test_psi_on_baseline_deciles_of_shifted_pds() -> None:
    base = RNG.beta(1, 20, 4000)
    shifted = RNG.beta(1.5, 15, 3000)
    base_hist = Histogram.from_values(PD_GRID, base)
    edges = m.decile_edges(base_hist)
    assert len(edges) == 9
    # The coarse bins are the reference deciles: each holds about 10 %.
    coarse_base = m.coarse_counts(base_hist, edges)
    assert np.all(np.abs(coarse_base / coarse_base.sum() - 0.1) < 0.01)
    coarse_new = m.coarse_counts(Histogram.from_values(PD_GRID, shifted), edges)
    # The same binning done directly on the values (edges lie on the 1e-4 grid).
    direct_base = np.bincount(np.searchsorted(edges, base, side="right"), minlength=10)
    direct_new = np.bincount(np.searchsorted(edges, shifted, side="right"), minlength=10)
    assert coarse_base.tolist() == direct_base.tolist()
    assert coarse_new.tolist() == direct_new.tolist()
    assert m.psi(coarse_base, coarse_new) > 0.1


def test_ks_is_scipy_asymptotic_for_integer_columns() -> None:
    a = RNG.poisson(200, 300)
    b = RNG.poisson(206, 250)
    ha, hb = Histogram.from_values(COUNT_GRID, a), Histogram.from_values(COUNT_GRID, b)
    _, ca, cb = m.align(ha, hb)
    statistic, pvalue = m.ks_two_sample(ca, cb)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert m.ks_error_bound(COUNT_GRID, ca, cb) == 0.0
    assert m.ks_two_sample(ca, ca) == (0.0, 1.0)


def test_ks_on_pd_bins_is_within_its_error_bound() -> None:
    a = RNG.beta(1, 20, 500)
    b = RNG.beta(1.2, 18, 400)
    _, ca, cb = m.align(Histogram.from_values(PD_GRID, a), Histogram.from_values(PD_GRID, b))
    statistic, _ = m.ks_two_sample(ca, cb)
    exact = stats.ks_2samp(a, b).statistic
    assert abs(statistic - exact) <= m.ks_error_bound(PD_GRID, ca, cb) + 1e-12


def test_wasserstein_exact_for_integers_and_within_the_bin_width_for_pd() -> None:
    a, b = RNG.poisson(30, 200), RNG.poisson(33, 150)
    index, ca, cb = m.align(
        Histogram.from_values(COUNT_GRID, a), Histogram.from_values(COUNT_GRID, b)
    )
    assert m.wasserstein(COUNT_GRID, index, ca, cb) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-12
    )
    pa, pb = RNG.beta(1, 20, 300), RNG.beta(1, 10, 300)
    index, ca, cb = m.align(Histogram.from_values(PD_GRID, pa), Histogram.from_values(PD_GRID, pb))
    assert (
        abs(m.wasserstein(PD_GRID, index, ca, cb) - stats.wasserstein_distance(pa, pb))
        <= PD_GRID.wasserstein_error_bound
    )


def test_js_distance_is_scipy_base_2() -> None:
    p, q = np.array([5, 10, 0, 3]), np.array([4, 4, 4, 4])
    assert m.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)
    assert m.js_distance(p, p) == 0.0


def test_chi_squared_is_the_contingency_test() -> None:
    a, b = np.array([30, 50, 20, 0]), np.array([25, 40, 40, 0])
    statistic, pvalue = m.chi_squared(a, b)
    expected = stats.chi2_contingency(np.array([[30, 50, 20], [25, 40, 40]]), correction=False)
    assert (statistic, pvalue) == pytest.approx((expected.statistic, expected.pvalue))
    assert m.chi_squared(np.array([5, 0]), np.array([7, 0])) == (0.0, 1.0)


def test_auc_gini_ks_from_bins_match_sklearn_and_scipy() -> None:
    # Scores in the middle of 1e-4 bins, so each fine bin holds one distinct score: exact.
    y = RNG.random(400) < 0.2
    raw = np.clip(0.05 + 0.1 * y + RNG.normal(0, 0.08, 400), 0, 0.9999)
    score = (np.floor(raw * 1e4) + 0.5) / 1e4
    hist_pos = Histogram.from_values(PD_GRID, score[y])
    hist_neg = Histogram.from_values(PD_GRID, score[~y])
    _, pos, neg = m.align(hist_pos, hist_neg)
    auc = m.auc_binned(pos, neg)
    assert auc == pytest.approx(roc_auc_score(y, score), rel=1e-12)
    assert m.gini(auc) == pytest.approx(2 * roc_auc_score(y, score) - 1)
    ks, _ = m.ks_two_sample(pos, neg)
    assert ks == pytest.approx(stats.ks_2samp(score[y], score[~y]).statistic, abs=1e-12)


def test_auc_from_fine_bins_is_within_its_bound() -> None:
    y = RNG.random(300) < 0.3
    score = np.clip(0.01 + 0.002 * y + RNG.normal(0, 0.001, 300), 0, 1)
    _, pos, neg = m.align(
        Histogram.from_values(PD_GRID, score[y]), Histogram.from_values(PD_GRID, score[~y])
    )
    assert abs(m.auc_binned(pos, neg) - roc_auc_score(y, score)) <= m.auc_error_bound(pos, neg)


def test_brier_and_log_loss_sums_match_sklearn() -> None:
    y = np.array([0, 1, 0, 0, 1, 0])
    p = np.array([0.1, 0.7, 0.0, 0.2, 1.0, 0.4])
    eps = m.LOG_LOSS_EPSILON
    clipped = np.clip(p, eps, 1 - eps)
    direct_log_loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert direct_log_loss == pytest.approx(log_loss(y, p), rel=1e-9)
    assert np.mean((p - y) ** 2) == pytest.approx(brier_score_loss(y, p))


def test_hosmer_lemeshow_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(2, 20, 1000)
    y = (rng.random(1000) < p * 1.3).astype(int)
    frame = pd.DataFrame({"p": p, "y": y})
    frame["g"] = pd.qcut(frame["p"].rank(method="first"), 10, labels=False)
    groups = frame.groupby("g").agg(n=("y", "size"), o=("y", "sum"), e=("p", "sum"))
    direct = np.sum((groups.o - groups.e) ** 2 / (groups.e * (1 - groups.e / groups.n)))
    statistic, pvalue, n_groups = m.hosmer_lemeshow(
        groups.n.to_numpy(), groups.o.to_numpy(), groups.e.to_numpy()
    )
    assert n_groups == 10
    assert statistic == pytest.approx(direct, rel=1e-12)
    # Out of sample (a backtest) the statistic has G degrees of freedom; in sample, G - 2.
    assert pvalue == pytest.approx(stats.chi2.sf(direct, 10), rel=1e-12)
    _, in_sample, _ = m.hosmer_lemeshow(
        groups.n.to_numpy(), groups.o.to_numpy(), groups.e.to_numpy(), in_sample=True
    )
    assert in_sample == pytest.approx(stats.chi2.sf(direct, 8), rel=1e-12)


def test_quantile_groups_split_sorted_bins_evenly() -> None:
    counts = np.ones(100)
    groups = m.quantile_groups(counts, 10)
    assert np.bincount(groups).tolist() == [10] * 10
    assert np.all(np.diff(groups) >= 0)


def test_disparate_impact_and_equal_opportunity_from_rates() -> None:
    frame = pd.DataFrame(
        {
            "group": ["a", "a", "a", "a", "b", "b", "b", "b", "b"],
            "approved": [1, 1, 0, 1, 1, 0, 0, 0, 1],
            "default": [0, 0, 1, 0, 0, 0, 1, 0, 0],
        }
    )
    rates = frame.groupby("group")["approved"].mean()
    tpr = frame[frame.default == 0].groupby("group")["approved"].mean()
    assert m.disparate_impact(m.rate(2, 5), m.rate(3, 4)) == pytest.approx(rates["b"] / rates["a"])
    assert m.equal_opportunity_difference(m.rate(2, 4), m.rate(3, 3)) == pytest.approx(
        tpr["b"] - tpr["a"]
    )
    assert m.disparate_impact(0.5, 0.0) is None


def test_decile_edges_leave_no_empty_bin_with_ties() -> None:
    values = np.array([0] * 70 + [1] * 20 + [2] * 5 + [5] * 5)
    hist = Histogram.from_values(COUNT_GRID, values)
    edges = m.decile_edges(hist)
    counts = m.coarse_counts(hist, edges)
    # Deciles: 70 % at 0 and 90 % at or below 1; 2 and 5 share the top decile.
    assert edges.tolist() == [1.0, 2.0]
    assert counts.tolist() == [70, 20, 10]
