"""Performance estimated from the calibrated PDs alone, before any outcome matures.

If the PDs are calibrated, obligor i defaults with probability p_i. The expected default rate of
a grade (or the portfolio) is then its mean PD, and the expected AUC is the AUC of the expected
confusion: each PD bin counts sum(p) defaulters and n - sum(p) non-defaulters (confidence-based
performance estimation). The bands come from simulated outcomes: per (grade, PD bin) cell,
Binomial(n, mean PD) defaults, drawn with a fixed seed so that a rerun writes the same rows.
The calibration that set the PDs' level was fitted on a finite sample; with ``level_sd`` (its
standard error in log-odds, ``level_error`` of the model's manifest) each simulation first shifts
every PD's log-odds by one normal draw, so the bands cover that uncertainty too.

What it cannot see: a change in how the text relates to default. It assumes the PDs stay
calibrated; only outcomes (or early-delinquency proxies) reveal that they no longer are.
Pure functions of per-cell counts; Spark reduces the scored rows to them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskudf.monitoring.backtest import BacktestRecord

_CHUNK = 200  # simulations drawn at a time (bounds memory: chunk x cells)


@dataclass(frozen=True)
class Cell:
    """Obligors of one grade in one PD bin: their count and the sum of their PDs."""

    grade: str | None
    pd_bin: int
    n: int
    sum_pd: float


@dataclass(frozen=True)
class EstimateRecord:
    cohort_date: dt.date
    grade: str | None  # None: the whole portfolio
    obligors: int
    expected_defaults: float
    expected_dr: float
    dr_lower: float
    dr_upper: float
    expected_auc: float | None = None  # the portfolio row only
    auc_lower: float | None = None
    auc_upper: float | None = None
    realised_obligors: int | None = None  # matured cohorts: the backtest's figures
    realised_defaults: int | None = None
    realised_dr: float | None = None
    realised_auc: float | None = None


def auc_of_bins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC per row of bin counts sorted by PD (riskiest last), ties one half; nan without
    defaulters or without non-defaulters. ``pos``, ``neg``: (rows, bins)."""
    below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(pos * (below + 0.5 * neg), axis=1) / (total_pos * total_neg)


def level_error(calibration: Mapping[str, Any]) -> float:
    """The standard error, in log-odds, of the PD level a calibration set: that of the default
    rate's log-odds on the rows it was fitted on, sqrt(1/D + 1/(N - D)) (``fitted_on``); 0 for
    a map that does not fit the level (none, temperature) or a manifest without the record.
    (Platt's intercept is known a little less well: its slope is fitted too.)"""
    fitted = calibration.get("fitted_on") or {}
    rows, defaults = int(fitted.get("rows", 0)), int(fitted.get("defaults", 0))
    if calibration.get("method") not in ("platt", "isotonic") or not 0 < defaults < rows:
        return 0.0
    return math.sqrt(1.0 / defaults + 1.0 / (rows - defaults))


def estimate(
    cells: Sequence[Cell],
    *,
    cohort_date: dt.date,
    level: float = 0.9,
    simulations: int = 1000,
    seed: int = 0,
    level_sd: float = 0.0,
) -> list[EstimateRecord]:
    """The portfolio's expected default rate and AUC with their bands, then each grade's
    expected default rate with its band (grades sorted by name; ``level``: the band's
    coverage, equal tails; ``level_sd``: the calibrated level's standard error in log-odds,
    0 for outcome noise alone)."""
    live = [c for c in cells if c.n > 0]
    if not live:
        return []
    n = np.array([c.n for c in live], dtype=np.int64)
    p = np.clip(np.array([c.sum_pd for c in live]) / n, 0.0, 1.0)
    bins = np.array([c.pd_bin for c in live])
    order = np.unique(bins, return_inverse=True)[1]  # each cell's bin, by increasing PD
    grades = sorted({c.grade for c in live}, key=lambda g: (g is None, g or ""))
    of_grade = np.array([grades.index(c.grade) for c in live])
    rng = np.random.default_rng(seed)
    clipped = np.clip(p, 1e-12, 1 - 1e-12)
    log_odds = np.log(clipped) - np.log1p(-clipped)
    defaults_by_grade, aucs = [], []
    for start in range(0, simulations, _CHUNK):
        size = (min(_CHUNK, simulations - start), len(live))
        drawn_p = p
        if level_sd > 0:
            shifts = rng.normal(0.0, level_sd, size=(size[0], 1))
            drawn_p = 1.0 / (1.0 + np.exp(-(log_odds + shifts)))
        draws = rng.binomial(n, drawn_p, size=size)
        per_bin = np.zeros((len(draws), order.max() + 1))
        np.add.at(per_bin.T, order, draws.T)
        n_bin = np.bincount(order, weights=n)
        aucs.append(auc_of_bins(per_bin, n_bin[None, :] - per_bin))
        by_grade = np.zeros((len(draws), len(grades)))
        np.add.at(by_grade.T, of_grade, draws.T)
        defaults_by_grade.append(by_grade)
    simulated_auc = np.concatenate(aucs)
    simulated_defaults = np.concatenate(defaults_by_grade)
    tails = [(1 - level) / 2, 1 - (1 - level) / 2]
    expected_pos = np.bincount(order, weights=n * p)
    expected_neg = np.bincount(order, weights=n * (1 - p))
    expected_auc = float(auc_of_bins(expected_pos[None, :], expected_neg[None, :])[0])
    finite = simulated_auc[np.isfinite(simulated_auc)]
    auc_band = np.quantile(finite, tails) if len(finite) else (np.nan, np.nan)

    def record(grade: str | None, mask: np.ndarray, simulated: np.ndarray) -> EstimateRecord:
        obligors = int(n[mask].sum())
        expected = float((n * p)[mask].sum())
        lower, upper = np.quantile(simulated, tails) / obligors
        return EstimateRecord(
            cohort_date, grade, obligors, expected, expected / obligors, float(lower), float(upper)
        )

    whole = record(None, np.ones(len(live), bool), simulated_defaults.sum(axis=1))
    records = [
        EstimateRecord(
            **{
                **whole.__dict__,
                "expected_auc": _finite(expected_auc),
                "auc_lower": _finite(float(auc_band[0])),
                "auc_upper": _finite(float(auc_band[1])),
            }
        )
    ]
    for index, grade in enumerate(grades):
        records.append(record(grade, of_grade == index, simulated_defaults[:, index]))
    return records


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def matured_cells(outcome_bins: Iterable[Any]) -> dict[tuple[dt.date, str], list[Cell]]:
    """The backtest's whole-portfolio outcome bins as cells per matured cohort (cohort date,
    run): both outcomes of a (grade, PD bin) together, as the estimate saw them."""
    sums: dict[tuple[dt.date, str], dict[tuple[str | None, int], list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0, 0.0])
    )
    for row in outcome_bins:
        if row["slice_key"] is not None:
            continue
        cell = sums[(row["cohort_date"], row["cohort_run_id"])][(row["grade"], int(row["pd_bin"]))]
        cell[0] += int(row["n"])
        cell[1] += float(row["sum_pd"])
    return {
        key: [Cell(g, b, int(v[0]), v[1]) for (g, b), v in sorted(found.items(), key=_cell_key)]
        for key, found in sums.items()
    }


def _cell_key(item: tuple[tuple[str | None, int], list[float]]) -> tuple[str, int]:
    (grade, pd_bin), _ = item
    return (grade or "", pd_bin)


def with_realised(
    records: list[EstimateRecord], backtest: Iterable[BacktestRecord], cohort_run_id: str
) -> list[EstimateRecord]:
    """Each estimate of a matured cohort with the backtest's realised figures beside it."""
    realised = {
        r.grade: r for r in backtest if r.slice_key is None and r.cohort_run_id == cohort_run_id
    }
    out = []
    for record in records:
        found = realised.get(record.grade)
        if found is None:
            out.append(record)
            continue
        out.append(
            EstimateRecord(
                **{
                    **record.__dict__,
                    "realised_obligors": found.n,
                    "realised_defaults": found.defaults,
                    "realised_dr": found.observed_dr,
                    "realised_auc": found.auc if record.grade is None else None,
                }
            )
        )
    return out
