"""Approval rates per group of a protected or proxy attribute, against a reference group."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from riskudf.config import FairnessAttribute
from riskudf.monitoring.backtest import GroupDecisions
from riskudf.monitoring.baseline import Histograms
from riskudf.monitoring.columns import NULL_SLICE
from riskudf.monitoring.metrics import disparate_impact, equal_opportunity_difference, rate


@dataclass(frozen=True)
class FairnessRecord:
    cohort_date: dt.date
    attribute: str
    group_value: str
    reference_group: str
    n: int
    approvals: int
    approval_rate: float
    disparate_impact: float | None
    n_non_default: int | None
    approval_rate_non_default: float | None
    equal_opportunity_difference: float | None


def decisions_from_histograms(histograms: Histograms, attribute: str) -> dict[str, GroupDecisions]:
    """Group -> decisions of this run, from the decision counts of the attribute's slices."""
    out = {}
    for (slice_key, slice_value, column), hist in histograms.items():
        if slice_key == attribute and column == "decision" and slice_value is not None:
            categories = hist.categories or {}
            out[slice_value] = GroupDecisions(
                n=sum(categories.values()), approvals=categories.get("approve", 0)
            )
    return out


def fairness_records(
    groups: dict[str, GroupDecisions], attribute: FairnessAttribute, cohort_date: dt.date
) -> list[FairnessRecord]:
    """One record per group (obligors lacking the attribute are left out)."""
    reference = groups.get(attribute.reference)
    ref_rate = rate(reference.approvals, reference.n) if reference else None
    ref_tpr = (
        rate(reference.approvals_non_default, reference.n_non_default)
        if reference
        and reference.n_non_default is not None
        and reference.approvals_non_default is not None
        else None
    )
    records = []
    for group in sorted(groups):
        if group == NULL_SLICE or groups[group].n == 0:
            continue
        counts = groups[group]
        approval_rate = counts.approvals / counts.n
        tpr = (
            rate(counts.approvals_non_default, counts.n_non_default)
            if counts.n_non_default is not None and counts.approvals_non_default is not None
            else None
        )
        records.append(
            FairnessRecord(
                cohort_date=cohort_date,
                attribute=attribute.column,
                group_value=group,
                reference_group=attribute.reference,
                n=counts.n,
                approvals=counts.approvals,
                approval_rate=approval_rate,
                disparate_impact=disparate_impact(approval_rate, ref_rate),
                n_non_default=counts.n_non_default,
                approval_rate_non_default=tpr,
                equal_opportunity_difference=equal_opportunity_difference(tpr, ref_tpr),
            )
        )
    return records
