"""The promotion gate's tests and decision, from per-grade aggregates (no Spark, no model).

Evidence comes in two scopes: ``test_split`` (the candidate's own held-out split, recorded in its
manifest at training) and ``matured`` (cohorts whose outcomes have matured since, scored by the
candidate in Spark, see riskudf.governance.evidence). Each test gets a colour from conf
thresholds; one red refuses the promotion unless an override gives a written reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from riskudf.config import GateConf
from riskudf.governance import statistics as st
from riskudf.training.evaluate import GradeRow

PORTFOLIO = "portfolio"


@dataclass(frozen=True)
class TestResult:
    test: str  # jeffreys, binomial, auc_change, herfindahl, bandwidth_upper, ...
    scope: str  # test_split or matured
    grade: str  # a grade, or "portfolio"
    statistic: float | None
    pvalue: float | None
    colour: str
    detail: str

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def calibration_tests(rows: Sequence[GradeRow], scope: str, gate: GateConf) -> list[TestResult]:
    """Jeffreys and binomial per grade and for the portfolio (one-sided: PD too low)."""
    total = GradeRow(
        PORTFOLIO,
        sum(r.n for r in rows),
        sum(r.defaults for r in rows),
        sum(r.pd_sum for r in rows),
    )
    results = []
    for row in [*rows, total]:
        detail = f"{row.defaults} defaults of {row.n}, mean PD {row.mean_pd:.4%}"
        if row.n == 0:
            detail = "no obligors"
        for name, test in (("jeffreys", st.jeffreys_test), ("binomial", st.binomial_test)):
            pvalue = test(row.defaults, row.n, row.mean_pd) if row.n else None
            results.append(
                TestResult(name, scope, row.grade, None, pvalue, _colour(pvalue, gate), detail)
            )
    return results


def discrimination_test(
    rows: Sequence[GradeRow], initial_auc: float, scope: str, gate: GateConf
) -> TestResult:
    """The current-against-initial AUC test on grades (riskiest last in ``rows``)."""
    defaults = np.array([r.defaults for r in rows])
    others = np.array([r.n - r.defaults for r in rows])
    result = st.auc_change_test(defaults, others, initial_auc)
    if result is None:
        return TestResult(
            "auc_change", scope, PORTFOLIO, None, None, st.NOT_ASSESSED, "too few defaults"
        )
    detail = f"AUC {result.auc:.4f} against initial {initial_auc:.4f}, s {result.std_error:.4f}"
    return TestResult(
        "auc_change",
        scope,
        PORTFOLIO,
        result.statistic,
        result.pvalue,
        _colour(result.pvalue, gate),
        detail,
    )


def concentration_test(
    current: Sequence[GradeRow], initial: Sequence[GradeRow], scope: str, gate: GateConf
) -> TestResult:
    """Herfindahl: has grade concentration risen since the test split?"""
    now = np.array([r.n for r in current], float)
    then = np.array([r.n for r in initial], float)
    found = st.herfindahl_test(now, then)
    index = st.concentration(now)
    if found is None or index is None:
        return TestResult(
            "herfindahl", scope, PORTFOLIO, None, None, st.NOT_ASSESSED, "no obligors"
        )
    statistic, pvalue = found
    detail = f"HI {index.herfindahl:.4f}, CV {index.coefficient_of_variation:.4f}"
    return TestResult(
        "herfindahl", scope, PORTFOLIO, statistic, pvalue, _colour(pvalue, gate), detail
    )


def stability_tests(matrix: np.ndarray | None, scope: str, gate: GateConf) -> list[TestResult]:
    """Upper and lower bandwidths of the migration from the champion's grades to the
    candidate's on the same obligors (not assessed without a champion)."""
    if matrix is None:
        return [
            TestResult(name, scope, PORTFOLIO, None, None, st.NOT_ASSESSED, "no champion")
            for name in ("bandwidth_upper", "bandwidth_lower")
        ]
    upper, lower = st.migration_bandwidths(matrix)
    moved = int(matrix.sum() - np.trace(matrix))
    detail = f"{moved} of {int(matrix.sum())} obligors change grade"
    return [
        TestResult(
            name,
            scope,
            PORTFOLIO,
            value,
            None,
            st.colour_of_value(
                value,
                yellow_above=gate.bandwidth_yellow_above,
                red_above=gate.bandwidth_red_above,
            )
            if value is not None
            else st.GREEN,  # nobody moved that way
            detail,
        )
        for name, value in (("bandwidth_upper", upper), ("bandwidth_lower", lower))
    ]


def decide(results: Sequence[TestResult], override_reason: str | None) -> str:
    """promoted, refused (a red test), or overridden (a red test and a written reason)."""
    red = any(r.colour == st.RED for r in results)
    if not red:
        return "promoted"
    return "overridden" if override_reason and override_reason.strip() else "refused"


def _colour(pvalue: float | None, gate: GateConf) -> str:
    return st.colour_of_pvalue(
        pvalue, yellow_below=gate.pvalue_yellow_below, red_below=gate.pvalue_red_below
    )
