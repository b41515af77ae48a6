"""The gate's tests and decision from per-grade counts (pure: no Spark, no model)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import stats

from riskudf.config import GateConf
from riskudf.governance import gate
from riskudf.governance import statistics as st
from riskudf.governance.evidence import EvidenceError, choose_cohorts
from riskudf.governance.promote import gate_results, initial_auc_of
from riskudf.training.evaluate import GradeRow, by_grade

GATE = GateConf()


def test_by_grade_counts_every_grade_of_the_scale_in_order() -> None:
    rows = by_grade(
        ["B", "A", "B", "C"],
        np.array([0.2, 0.01, 0.3, 0.9]),
        np.array([1, 0, 0, 1]),
        ["A", "B", "C", "D"],
    )
    assert rows == [
        GradeRow("A", 1, 0, 0.01),
        GradeRow("B", 2, 1, 0.5),
        GradeRow("C", 1, 1, 0.9),
        GradeRow("D", 0, 0, 0.0),
    ]


def test_calibration_tests_per_grade_and_portfolio_with_colours() -> None:
    rows = [GradeRow("A", 200, 1, 2.0), GradeRow("B", 100, 12, 3.0), GradeRow("C", 0, 0, 0.0)]
    results = {(r.test, r.grade): r for r in gate.calibration_tests(rows, "matured", GATE)}
    assert set(results) == {(t, g) for t in ("jeffreys", "binomial") for g in "ABC"} | {
        ("jeffreys", "portfolio"),
        ("binomial", "portfolio"),
    }
    # Grade B: 12 defaults where the PD says 3 -> red; grade A: 1 where it says 2 -> green.
    assert results["binomial", "B"].pvalue == pytest.approx(
        stats.binomtest(12, 100, 0.03, alternative="greater").pvalue, abs=1e-12
    )
    assert results["binomial", "B"].colour == st.RED
    assert results["jeffreys", "A"].colour == st.GREEN
    assert results["jeffreys", "C"].colour == st.NOT_ASSESSED  # a grade without obligors
    assert results["jeffreys", "portfolio"].pvalue == pytest.approx(
        stats.beta.cdf(5 / 300, 13.5, 287.5), abs=1e-12
    )


def test_the_decision_is_red_refuses_unless_overridden() -> None:
    green = gate.TestResult("jeffreys", "matured", "A", None, 0.5, st.GREEN, "")
    yellow = gate.TestResult("binomial", "matured", "A", None, 0.03, st.YELLOW, "")
    red = gate.TestResult("binomial", "matured", "B", None, 0.001, st.RED, "")
    assert gate.decide([green, yellow], None) == "promoted"
    assert gate.decide([green, red], None) == "refused"
    assert gate.decide([green, red], "  ") == "refused"  # a reason is words
    assert gate.decide([green, red], "validated on the 2025 backbook") == "overridden"


def test_the_gate_without_a_champion_or_test_split_marks_what_it_could_not_assess() -> None:
    current = [GradeRow("A", 300, 3, 3.3), GradeRow("B", 200, 8, 7.0)]
    results = gate_results(current, [], initial_auc=0.7, matrix=None, gate_conf=GATE)
    assessed = {r.test: r.colour for r in results if r.grade == "portfolio"}
    assert assessed["herfindahl"] == st.NOT_ASSESSED
    assert assessed["bandwidth_upper"] == assessed["bandwidth_lower"] == st.NOT_ASSESSED
    assert assessed["robustness"] == st.NOT_ASSESSED
    assert assessed["auc_change"] in (st.GREEN, st.YELLOW, st.RED)


def test_bandwidths_colour_by_their_limits() -> None:
    # 8 grades: a few one-notch moves each way (about 0.2), and a book turned upside down.
    calm = 50 * np.eye(8) + np.eye(8, k=1) + np.eye(8, k=-1)
    wild = 50 * np.fliplr(np.eye(8))
    assert {r.colour for r in gate.stability_tests(calm, "matured", GATE)} == {st.GREEN}
    assert {r.colour for r in gate.stability_tests(wild, "matured", GATE)} == {st.RED}


def test_gate_thresholds_are_ordered() -> None:
    with pytest.raises(ValueError, match="pvalue_red_below"):
        GateConf(pvalue_yellow_below=0.01, pvalue_red_below=0.05)


def test_the_gate_tests_on_a_matured_cohort_the_model_never_saw() -> None:
    d = [dt.date(2023, 11, 28), dt.date(2024, 11, 28), dt.date(2025, 11, 28)]
    assert choose_cohorts([], d, {d[2]}) == [d[1]]  # the latest out of the training set
    assert choose_cohorts([d[0]], d, {d[2]}) == [d[0]]
    with pytest.raises(EvidenceError, match="in-sample"):
        choose_cohorts([d[2]], d, {d[2]})
    with pytest.raises(EvidenceError, match="not matured"):
        choose_cohorts([dt.date(2026, 11, 28)], d, set())
    with pytest.raises(EvidenceError, match="no matured cohort outside"):
        choose_cohorts([], d[2:], {d[2]})


def test_the_initial_auc_is_taken_on_grades_like_the_current_one() -> None:
    # Grouping into grades lowers an AUC: the test split's AUC on PDs (0.9 here) would make a
    # model that has not changed look worse.
    initial = [GradeRow("A", 100, 1, 1.0), GradeRow("B", 100, 4, 4.0), GradeRow("C", 50, 10, 9.0)]
    defaults, others = np.array([1, 4, 10]), np.array([99, 96, 40])
    on_grades = st.auc_change_test(defaults, others, 0.0)
    assert on_grades is not None
    assert initial_auc_of(initial, 0.9) == pytest.approx(on_grades.auc, abs=1e-12)
    assert initial_auc_of([], 0.9) == 0.9  # a model that records no test split per grade
    # The same grades now: S is 0, p one half (green), whatever the AUC on PDs was.
    same = gate.discrimination_test(initial, initial_auc_of(initial, 0.9), "matured", GATE)
    assert same.statistic == pytest.approx(0.0, abs=1e-12) and same.colour == st.GREEN
