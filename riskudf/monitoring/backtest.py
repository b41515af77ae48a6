"""Backtest of matured cohorts and the fairness of decisions, from per-bin outcome aggregates."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import Row

from riskudf.governance.statistics import jeffreys_interval, jeffreys_pvalue
from riskudf.monitoring.metrics import (
    auc_binned,
    auc_error_bound,
    gini,
    hosmer_lemeshow,
    ks_two_sample,
    nan_to_none,
    quantile_groups,
)

HL_GROUPS = 10


@dataclass(frozen=True)
class BacktestRecord:
    cohort_date: dt.date
    cohort_run_id: str
    horizon_months: int
    slice_key: str | None
    slice_value: str | None
    grade: str | None
    n: int
    defaults: int
    mean_pd: float
    observed_dr: float
    jeffreys_lower: float
    jeffreys_upper: float
    jeffreys_pvalue: float
    auc: float | None = None
    auc_error_bound: float | None = None
    gini: float | None = None
    ks_statistic: float | None = None
    brier: float | None = None
    log_loss: float | None = None
    hosmer_lemeshow_statistic: float | None = None
    hosmer_lemeshow_pvalue: float | None = None
    hosmer_lemeshow_groups: int | None = None


@dataclass
class _Sums:
    n: int = 0
    defaults: int = 0
    sum_pd: float = 0.0
    sum_brier: float = 0.0
    sum_log_loss: float = 0.0

    def add(self, row: Row) -> None:
        self.n += int(row["n"])
        self.defaults += int(row["n"]) * int(row["default_12m"])
        self.sum_pd += float(row["sum_pd"])
        self.sum_brier += float(row["sum_brier"])
        self.sum_log_loss += float(row["sum_log_loss"])


def _calibration(
    key: tuple[dt.date, str, int, str | None, str | None], grade: str | None, sums: _Sums
) -> dict[str, Any]:
    cohort_date, cohort_run_id, horizon, slice_key, slice_value = key
    mean_pd = sums.sum_pd / sums.n
    lower, upper = jeffreys_interval(sums.defaults, sums.n)
    return {
        "cohort_date": cohort_date,
        "cohort_run_id": cohort_run_id,
        "horizon_months": horizon,
        "slice_key": slice_key,
        "slice_value": slice_value,
        "grade": grade,
        "n": sums.n,
        "defaults": sums.defaults,
        "mean_pd": mean_pd,
        "observed_dr": sums.defaults / sums.n,
        "jeffreys_lower": lower,
        "jeffreys_upper": upper,
        "jeffreys_pvalue": jeffreys_pvalue(sums.defaults, sums.n, mean_pd),
    }


def _discrimination(bins: dict[int, list[float]], sums: _Sums) -> dict[str, Any]:
    """AUC, Gini, KS and Hosmer-Lemeshow from per-PD-bin [non-defaults, defaults, sum of PD]."""
    order = sorted(bins)
    neg = np.array([bins[b][0] for b in order])
    pos = np.array([bins[b][1] for b in order])
    sum_pd = np.array([bins[b][2] for b in order])
    auc = auc_binned(pos, neg)
    ks, _ = ks_two_sample(pos, neg)
    groups = quantile_groups(pos + neg, HL_GROUPS)
    n_g = np.bincount(groups, weights=pos + neg, minlength=HL_GROUPS)
    o_g = np.bincount(groups, weights=pos, minlength=HL_GROUPS)
    e_g = np.bincount(groups, weights=sum_pd, minlength=HL_GROUPS)
    hl, hl_p, hl_groups = hosmer_lemeshow(n_g, o_g, e_g)
    return {
        "auc": nan_to_none(auc),
        "auc_error_bound": nan_to_none(auc_error_bound(pos, neg)),
        "gini": nan_to_none(gini(auc)),
        "ks_statistic": nan_to_none(ks),
        "brier": sums.sum_brier / sums.n,
        "log_loss": sums.sum_log_loss / sums.n,
        "hosmer_lemeshow_statistic": nan_to_none(hl),
        "hosmer_lemeshow_pvalue": nan_to_none(hl_p),
        "hosmer_lemeshow_groups": hl_groups,
    }


def backtest_records(rows: Iterable[Row], *, horizon_months: int) -> list[BacktestRecord]:
    """Per cohort and slice: one all-grades record (discrimination and calibration), then one
    calibration record per grade. ``rows`` come from ``aggregate.outcome_bins``."""
    totals: dict[tuple, _Sums] = defaultdict(_Sums)
    by_grade: dict[tuple, dict[str, _Sums]] = defaultdict(lambda: defaultdict(_Sums))
    bins: dict[tuple, dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0, 0.0, 0.0])
    )
    for row in rows:
        key = (
            row["cohort_date"],
            row["cohort_run_id"],
            horizon_months,
            row["slice_key"],
            row["slice_value"],
        )
        totals[key].add(row)
        by_grade[key][row["grade"]].add(row)
        cell = bins[key][int(row["pd_bin"])]
        cell[int(row["default_12m"])] += int(row["n"])
        cell[2] += float(row["sum_pd"])
    records = []
    for key in sorted(totals, key=lambda k: (k[0], k[3] or "", k[4] or "")):
        sums = totals[key]
        records.append(
            BacktestRecord(**_calibration(key, None, sums), **_discrimination(bins[key], sums))
        )
        for grade in sorted(by_grade[key], key=lambda g: g or ""):
            records.append(BacktestRecord(**_calibration(key, grade, by_grade[key][grade])))
    return records


@dataclass(frozen=True)
class GroupDecisions:
    n: int
    approvals: int
    n_non_default: int | None = None
    approvals_non_default: int | None = None


def outcome_decisions(
    rows: Iterable[Row], attributes: Iterable[str]
) -> dict[tuple[dt.date, str, str], GroupDecisions]:
    """(cohort_date, attribute, group) -> decisions with outcomes, from outcome_bins rows."""
    wanted = set(attributes)
    counts: dict[tuple[dt.date, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        if row["slice_key"] not in wanted:
            continue
        cell = counts[(row["cohort_date"], row["slice_key"], row["slice_value"])]
        n = int(row["n"])
        approved = row["decision"] == "approve"
        cell[0] += n
        cell[1] += n if approved else 0
        if int(row["default_12m"]) == 0:
            cell[2] += n
            cell[3] += n if approved else 0
    return {key: GroupDecisions(*values) for key, values in counts.items()}
