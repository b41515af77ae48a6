"""The PD-only performance estimate against outcomes simulated from a known, calibrated PD
distribution: the expected AUC and default rate, and the coverage of their 90 % bands."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from riskudf.monitoring.backtest import BacktestRecord
from riskudf.monitoring.estimate import (
    Cell,
    auc_of_bins,
    estimate,
    level_error,
    matured_cells,
    with_realised,
)

DAY = dt.date(2025, 11, 28)
WIDTH = 1e-4  # the monitoring's PD bins


def portfolio(n: int = 3000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, list[Cell]]:
    """PDs from Beta(0.6, 20) (mean about 3 %, a long right tail), their bins, grades
    A (< 1 %), B (< 5 %), C; and the cells monitoring would aggregate them to."""
    pds = np.random.default_rng(seed).beta(0.6, 20, n)
    bins = np.floor(pds / WIDTH).astype(int)
    grades = np.where(pds < 0.01, "A", np.where(pds < 0.05, "B", "C"))
    cells = []
    for grade in ("A", "B", "C"):
        for b in np.unique(bins[grades == grade]):
            mask = (grades == grade) & (bins == b)
            cells.append(Cell(grade, int(b), int(mask.sum()), float(pds[mask].sum())))
    return pds, bins, cells


def realised_auc(bins: np.ndarray, y: np.ndarray) -> float:
    size = bins.max() + 1
    pos = np.bincount(bins[y == 1], minlength=size)[None, :]
    neg = np.bincount(bins[y == 0], minlength=size)[None, :]
    return float(auc_of_bins(pos, neg)[0])


def test_the_estimate_matches_outcomes_simulated_from_calibrated_pds() -> None:
    pds, bins, cells = portfolio()
    whole, *grades = estimate(cells, cohort_date=DAY, level=0.9, simulations=1000, seed=0)
    assert [r.grade for r in grades] == ["A", "B", "C"]
    assert whole.obligors == len(pds)
    assert whole.expected_dr == pytest.approx(pds.mean(), abs=1e-12)
    c = grades[2]
    assert c.expected_dr == pytest.approx(pds[pds >= 0.05].mean(), abs=1e-12)
    # Independent outcomes, drawn with other seeds than the estimate's.
    rng = np.random.default_rng(2024)
    runs = 400
    aucs, rates, rates_c = np.empty(runs), np.empty(runs), np.empty(runs)
    for i in range(runs):
        y = (rng.random(len(pds)) < pds).astype(int)
        aucs[i], rates[i], rates_c[i] = realised_auc(bins, y), y.mean(), y[pds >= 0.05].mean()
    assert whole.expected_auc is not None and whole.auc_lower is not None
    assert whole.auc_upper is not None
    assert abs(aucs.mean() - whole.expected_auc) < 0.005
    # The 90 % bands hold about 90 % of the realised figures (400 runs: +-3 standard errors).
    inside = np.mean((whole.auc_lower <= aucs) & (aucs <= whole.auc_upper))
    assert 0.85 <= inside <= 0.95
    inside = np.mean((whole.dr_lower <= rates) & (rates <= whole.dr_upper))
    assert 0.85 <= inside <= 0.95
    inside = np.mean((c.dr_lower <= rates_c) & (rates_c <= c.dr_upper))
    assert 0.85 <= inside <= 0.95


def test_the_bands_cover_a_calibrated_level_known_only_to_its_standard_error() -> None:
    # The true PDs sit a random shift (sd 0.15 in log-odds) away from the model's, as when the
    # calibration's level is fitted on a finite sample: outcome noise alone is too narrow.
    pds, _, cells = portfolio()
    sd = 0.15
    rng = np.random.default_rng(7)
    rates = np.empty(400)
    for i in range(len(rates)):
        true = 1.0 / (1.0 + np.exp(-(np.log(pds / (1 - pds)) + rng.normal(0.0, sd))))
        rates[i] = (rng.random(len(pds)) < true).mean()
    wide = estimate(cells, cohort_date=DAY, level_sd=sd)[0]
    narrow = estimate(cells, cohort_date=DAY)[0]
    assert wide.expected_dr == narrow.expected_dr == pytest.approx(pds.mean(), abs=1e-12)
    assert 0.85 <= np.mean((wide.dr_lower <= rates) & (rates <= wide.dr_upper)) <= 0.95
    assert np.mean((narrow.dr_lower <= rates) & (rates <= narrow.dr_upper)) < 0.8


def test_the_level_error_comes_from_what_the_calibration_was_fitted_on() -> None:
    fitted = {"data": "out-of-fold PDs", "rows": 5770, "defaults": 151}
    platt = {"method": "platt", "slope": 0.85, "intercept": -3.4, "fitted_on": fitted}
    assert level_error(platt) == pytest.approx(np.sqrt(1 / 151 + 1 / 5619), rel=1e-12)
    assert level_error({"method": "platt", "slope": 1.0, "intercept": 0.0}) == 0.0  # older
    assert level_error({"method": "none", "fitted_on": fitted}) == 0.0
    assert level_error({"method": "temperature", "temperature": 2.0, "fitted_on": fitted}) == 0.0
    isotonic = {"method": "isotonic", "x": [0.0], "y": [0.0], "fitted_on": fitted}
    assert level_error(isotonic) == level_error(platt)
    assert level_error({**platt, "fitted_on": {**fitted, "defaults": 0}}) == 0.0


def test_the_same_cells_give_the_same_rows_and_none_give_none() -> None:
    _, _, cells = portfolio(400)
    assert estimate(cells, cohort_date=DAY) == estimate(list(cells), cohort_date=DAY)
    assert estimate([], cohort_date=DAY) == []
    assert estimate([Cell("A", 3, 0, 0.0)], cohort_date=DAY) == []


def test_a_matured_cohort_gets_the_backtests_figures_beside_its_estimate() -> None:
    def row(grade: str, pd_bin: int, default: int, n: int, sum_pd: float) -> dict:
        return {
            "slice_key": None,
            "slice_value": None,
            "cohort_date": DAY,
            "cohort_run_id": "r1",
            "grade": grade,
            "decision": "approve",
            "pd_bin": pd_bin,
            "default_12m": default,
            "n": n,
            "sum_pd": sum_pd,
        }

    bins = [
        row("A", 10, 0, 50, 50 * 0.00105),
        row("A", 10, 1, 1, 0.00105),
        row("B", 400, 0, 20, 20 * 0.0401),
        row("B", 400, 1, 3, 3 * 0.0401),
        {**row("B", 400, 1, 9, 1.0), "slice_key": "segment"},  # a slice: not the portfolio
    ]
    found = matured_cells(bins)
    assert found == {
        (DAY, "r1"): [
            Cell("A", 10, 51, pytest.approx(51 * 0.00105)),
            Cell("B", 400, 23, pytest.approx(23 * 0.0401)),
        ]
    }
    records = estimate(found[(DAY, "r1")], cohort_date=DAY, simulations=200)
    backtest = [
        BacktestRecord(DAY, "r1", 12, None, None, None, 74, 4, 0.04, 4 / 74, 0, 1, 0.5, auc=0.8),
        BacktestRecord(DAY, "r1", 12, None, None, "B", 23, 3, 0.04, 3 / 23, 0, 1, 0.5),
        BacktestRecord(DAY, "r0", 12, None, None, "A", 9, 9, 0.04, 1.0, 0, 1, 0.5),  # other run
    ]
    whole, a, b = with_realised(records, backtest, "r1")
    assert (whole.realised_obligors, whole.realised_defaults, whole.realised_auc) == (74, 4, 0.8)
    assert a.realised_dr is None  # no backtest row of grade A from run r1
    assert (b.realised_dr, b.realised_auc) == (3 / 23, None)
