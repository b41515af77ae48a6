"""Alert rules: thresholds from conf applied to the run's drift, backtest, fairness and counts.

Direction per rule: PSI, AUC drop, shares and |equal-opportunity difference| breach above their
levels; p-values and the disparate impact ratio breach below. A value past both levels raises one
alert, of severity ``alert`` with the alert level as threshold.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from riskudf.config import AlertRulesConf, Threshold
from riskudf.monitoring.backtest import BacktestRecord
from riskudf.monitoring.drift import DriftRecord
from riskudf.monitoring.fairness import FairnessRecord


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str  # warn | alert
    metric: str
    slice_key: str | None
    slice_value: str | None
    value: float
    threshold: float

    def alert_id(self, run_id: str) -> str:
        """Stable per run and rule and slice, so a rerun replaces rather than adds."""
        key = "|".join([run_id, self.rule, self.slice_key or "", self.slice_value or ""])
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def breach(value: float | None, threshold: Threshold, *, above: bool) -> tuple[str, float] | None:
    """(severity, level crossed) or None."""
    if value is None:
        return None
    for severity, level in (("alert", threshold.alert), ("warn", threshold.warn)):
        if level is not None and (value > level if above else value < level):
            return severity, level
    return None


@dataclass(frozen=True)
class RunShares:
    """Shares of the run's portfolio, for the document rules (None: not measurable)."""

    empty_document_share: float | None
    quarantined_share: float | None


def reference_auc(metrics: dict[str, float]) -> float | None:
    """The AUC a backtest is held against: the model's held-out test AUC (the validation split
    chose the epoch and its AUC flatters the model); a manifest without one, its validation AUC."""
    return metrics.get("test_auc", metrics.get("validation_auc"))


# Long on purpose: one short block per alert rule, read top to bottom.
def evaluate_alerts(
    rules: AlertRulesConf,
    *,
    as_of: dt.date,
    drift: Iterable[DriftRecord],
    backtest: Iterable[BacktestRecord],
    fairness: Iterable[FairnessRecord],
    shares: RunShares,
    reference_auc: float | None,
    estimated_auc: float | None = None,
) -> list[Alert]:
    alerts: list[Alert] = []

    def check(
        rule: str,
        metric: str,
        value: float | None,
        threshold: Threshold,
        *,
        above: bool,
        slice_key: str | None = None,
        slice_value: str | None = None,
    ) -> None:
        hit = breach(value, threshold, above=above)
        if hit is not None and value is not None:
            alerts.append(Alert(rule, hit[0], metric, slice_key, slice_value, value, hit[1]))

    big_enough = rules.min_slice_rows
    for record in drift:
        if record.slice_key is not None and record.count < big_enough:
            continue
        check(
            f"psi_{record.column_name}_{record.drift_type.lower()}",
            "population_stability_index",
            record.psi,
            rules.psi,
            above=True,
            slice_key=record.slice_key,
            slice_value=record.slice_value,
        )

    if reference_auc is not None and estimated_auc is not None:
        check(
            "estimated_auc_drop",
            "auc_drop_vs_test_estimated",
            reference_auc - estimated_auc,
            rules.estimated_auc_drop,
            above=True,
        )
    whole = [r for r in backtest if r.slice_key is None]
    if whole:
        latest = max(r.cohort_date for r in whole)
        for result in (r for r in whole if r.cohort_date == latest):
            if result.grade is None:
                if reference_auc is not None and result.auc is not None:
                    check(
                        "auc_drop",
                        "auc_drop_vs_test",
                        reference_auc - result.auc,
                        rules.auc_drop,
                        above=True,
                    )
                check(
                    "hosmer_lemeshow",
                    "hosmer_lemeshow_pvalue",
                    result.hosmer_lemeshow_pvalue,
                    rules.hosmer_lemeshow_pvalue,
                    above=False,
                )
            else:
                check(
                    "default_rate_by_grade",
                    "jeffreys_pvalue",
                    result.jeffreys_pvalue,
                    rules.jeffreys_pvalue,
                    above=False,
                    slice_key="grade",
                    slice_value=result.grade,
                )

    fairness = list(fairness)
    for group in fairness:
        if group.n < big_enough:
            continue
        if group.cohort_date == as_of:
            check(
                "disparate_impact",
                "disparate_impact_ratio",
                group.disparate_impact,
                rules.disparate_impact,
                above=False,
                slice_key=group.attribute,
                slice_value=group.group_value,
            )
    with_outcomes = [r for r in fairness if r.equal_opportunity_difference is not None]
    if with_outcomes:
        latest = max(r.cohort_date for r in with_outcomes)
        for group in with_outcomes:
            if group.cohort_date == latest and group.n >= big_enough:
                value = group.equal_opportunity_difference
                check(
                    "equal_opportunity",
                    "abs_equal_opportunity_difference",
                    abs(value) if value is not None else None,
                    rules.equal_opportunity_difference,
                    above=True,
                    slice_key=group.attribute,
                    slice_value=group.group_value,
                )

    check(
        "empty_documents",
        "empty_document_share",
        shares.empty_document_share,
        rules.empty_document_share,
        above=True,
    )
    check(
        "quarantined_documents",
        "quarantined_share",
        shares.quarantined_share,
        rules.quarantined_share,
        above=True,
    )
    return alerts
