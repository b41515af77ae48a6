"""Monitoring's driver-side pieces on small in-memory aggregates: baseline, drift, migration,
backtest, alerts and the report."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Row
from sklearn.metrics import brier_score_loss, roc_auc_score

from riskudf.config import AlertRulesConf, FairnessAttribute, Threshold, load_config
from riskudf.monitoring.alerts import Alert, RunShares, breach, evaluate_alerts, reference_auc
from riskudf.monitoring.backtest import GroupDecisions, backtest_records
from riskudf.monitoring.baseline import ColumnHistogram, build_baseline, parse_baseline
from riskudf.monitoring.drift import Reference, drift_records
from riskudf.monitoring.fairness import fairness_records
from riskudf.monitoring.metrics import PD_GRID, Histogram
from riskudf.monitoring.migration import migration_records
from riskudf.monitoring.report import SECTIONS, ReportData, TrendPoint, render_report
from riskudf.monitoring.run import add_months
from riskudf.scoring.grading import decisions_of, grades_of

ROOT = Path(__file__).resolve().parents[1]
CONF = load_config(ROOT / "conf/local.yaml")
GRADES = [band.grade for band in CONF.grading.master_scale]


def scored(seed: int, n: int = 500, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pds = np.clip(rng.beta(2, 30, n) * np.exp(shift), 0, 1)
    return pd.DataFrame(
        {
            "pd": pds,
            "n_tokens": (rng.integers(40, 400, n) * (1 + shift)).astype(int),
            "grade": grades_of(pds, CONF.grading),
            "decision": decisions_of(pds, CONF.grading),
            "truncated": rng.random(n) < 0.1,
            "segment": np.where(rng.random(n) < 0.3, "corporate", "retail"),
        }
    )


def histograms_of(frame: pd.DataFrame):
    return parse_baseline(
        build_baseline(frame, source="t", slice_columns=("segment",)), model_version="m"
    )


def test_a_run_against_itself_has_no_drift() -> None:
    baseline = histograms_of(scored(1))
    records = drift_records(
        baseline.histograms, Reference("CONSECUTIVE", baseline.histograms, baseline.edges)
    )
    columns = {r.column_name for r in records}
    assert columns == {"pd", "n_tokens", "grade", "decision", "truncated", "empty_document"}
    assert {r.slice_value for r in records} == {None, "corporate", "retail"}
    for r in records:
        assert r.psi == 0.0 and r.count_delta == 0
        assert r.js_distance == 0.0
        if r.data_type == "numeric":
            assert r.ks_statistic == 0.0 and r.ks_pvalue == 1.0
            assert r.wasserstein_distance == 0.0 and r.avg_delta == 0.0
        elif r.chi_squared_statistic is not None:
            assert r.chi_squared_statistic == pytest.approx(0.0, abs=1e-12)


def test_a_shifted_population_drifts_past_the_alert_level() -> None:
    baseline = histograms_of(scored(1))
    shifted = histograms_of(scored(2, shift=0.7))
    records = drift_records(
        shifted.histograms, Reference("BASELINE", baseline.histograms, baseline.edges)
    )
    whole = {r.column_name: r for r in records if r.slice_key is None}
    assert whole["pd"].psi > 0.25 and whole["n_tokens"].psi > 0.25
    assert whole["pd"].ks_pvalue < 1e-6
    assert whole["pd"].psi_bins == 10
    alerts = evaluate_alerts(
        AlertRulesConf(),
        as_of=dt.date(2026, 1, 1),
        drift=records,
        backtest=[],
        fairness=[],
        shares=RunShares(None, None),
        reference_auc=None,
    )
    fired = {(a.rule, a.slice_value): a for a in alerts}
    assert fired[("psi_pd_baseline", None)].severity == "alert"
    assert fired[("psi_pd_baseline", None)].threshold == 0.25


def test_baseline_pd_bins_are_the_validation_deciles() -> None:
    frame = scored(3, n=1000)
    baseline = histograms_of(frame)
    edges = baseline.edges["pd"]
    shares = np.bincount(np.searchsorted(edges, frame.pd, side="right"), minlength=10) / 1000
    assert np.all(np.abs(shares - 0.1) <= 0.01)
    pd_hist = baseline.histograms[(None, None, "pd")]
    assert pd_hist.numeric is not None and pd_hist.numeric.total == 1000
    grades = baseline.histograms[(None, None, "grade")]
    assert grades.categories == frame.grade.value_counts().to_dict()
    corporate = baseline.histograms[("segment", "corporate", "truncated")]
    part = frame[frame.segment == "corporate"]
    assert corporate.categories == {
        str(k).lower(): v for k, v in part.truncated.value_counts().items()
    }


def test_grades_of_matches_the_master_scale_bounds() -> None:
    pds = np.array([0.0, 0.0004999, 0.0005, 0.0149, 0.2, 0.3, 1.0])
    assert grades_of(pds, CONF.grading) == ["AAA", "AAA", "AA", "BB", "CCC", "CC", "CC"]
    assert decisions_of(pds, CONF.grading) == [
        "approve",
        "approve",
        "approve",
        "approve",
        "decline",
        "decline",
        "decline",
    ]


def test_migration_cells_rates_and_shares() -> None:
    rows = [
        Row(slice_key=None, slice_value=None, from_grade="A", to_grade="A", count=6),
        Row(slice_key=None, slice_value=None, from_grade="A", to_grade="BB", count=2),
        Row(slice_key=None, slice_value=None, from_grade="BB", to_grade="A", count=1),
        Row(slice_key=None, slice_value=None, from_grade="BB", to_grade="CC", count=1),
        Row(slice_key=None, slice_value=None, from_grade=None, to_grade="B", count=3),
        Row(slice_key=None, slice_value=None, from_grade="AA", to_grade=None, count=4),
    ]
    records = migration_records(rows, GRADES, notches_threshold=2)
    cells = {(r.from_grade, r.to_grade): r for r in records if r.record_type == "cell"}
    assert cells[("A", "BB")].notches == 2 and cells[("A", "BB")].rate == pytest.approx(0.25)
    assert cells[("BB", "CC")].notches == 3 and cells[("BB", "A")].notches == -2
    summary = next(r for r in records if r.record_type == "summary")
    assert summary.count == 10
    assert summary.upgrade_share == pytest.approx(0.1)
    assert summary.downgrade_share == pytest.approx(0.3)
    assert summary.stable_share == pytest.approx(0.6)
    assert summary.moved_over_share == pytest.approx(0.1)
    assert (summary.new_obligors, summary.exited_obligors) == (3, 4)


def test_backtest_records_from_bins_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    pds = (np.floor(rng.beta(2, 20, 300) * 1e4) + 0.5) / 1e4  # one score per 1e-4 bin
    y = (rng.random(300) < pds * 1.5).astype(int)
    grades = grades_of(pds, CONF.grading)
    frame = pd.DataFrame({"pd": pds, "y": y, "grade": grades, "bin": PD_GRID.index_of(pds)})
    rows = [
        Row(
            slice_key=None,
            slice_value=None,
            cohort_date=dt.date(2025, 1, 31),
            cohort_run_id="r0",
            grade=g,
            decision="approve",
            pd_bin=int(b),
            default_12m=int(d),
            n=len(part),
            sum_pd=float(part.pd.sum()),
            sum_brier=float(((part.pd - part.y) ** 2).sum()),
            sum_log_loss=0.0,
        )
        for (g, b, d), part in frame.groupby(["grade", "bin", "y"])
    ]
    records = backtest_records(rows, horizon_months=12)
    overall = records[0]
    assert overall.grade is None and overall.n == 300 and overall.defaults == y.sum()
    assert overall.auc == pytest.approx(roc_auc_score(y, pds), rel=1e-12)
    assert overall.brier == pytest.approx(brier_score_loss(y, pds))
    assert overall.hosmer_lemeshow_groups == 10
    by_grade = {r.grade: r for r in records[1:]}
    for grade, part in frame.groupby("grade"):
        assert (by_grade[grade].n, by_grade[grade].defaults) == (len(part), part.y.sum())
        assert by_grade[grade].mean_pd == pytest.approx(part.pd.mean())


def test_fairness_against_the_reference_group() -> None:
    groups = {
        "18-25": GroupDecisions(n=10, approvals=5, n_non_default=8, approvals_non_default=5),
        "36-50": GroupDecisions(n=20, approvals=16, n_non_default=18, approvals_non_default=15),
        ":null": GroupDecisions(n=7, approvals=7),
    }
    records = fairness_records(
        groups, FairnessAttribute(column="age_band", reference="36-50"), dt.date(2026, 1, 1)
    )
    assert [r.group_value for r in records] == ["18-25", "36-50"]
    young = records[0]
    assert young.disparate_impact == pytest.approx(0.5 / 0.8)
    assert young.equal_opportunity_difference == pytest.approx(5 / 8 - 15 / 18)
    assert records[1].disparate_impact == 1.0


def test_breach_directions_and_severity() -> None:
    above = Threshold(warn=0.1, alert=0.25)
    assert breach(0.05, above, above=True) is None
    assert breach(0.2, above, above=True) == ("warn", 0.1)
    assert breach(0.3, above, above=True) == ("alert", 0.25)
    below = Threshold(warn=0.8)
    assert breach(0.7, below, above=False) == ("warn", 0.8)
    assert breach(0.9, below, above=False) is None
    assert breach(None, above, above=True) is None
    alert = Alert("psi_pd_baseline", "alert", "population_stability_index", None, None, 0.3, 0.25)
    assert alert.alert_id("r1") == alert.alert_id("r1") != alert.alert_id("r2")


def test_the_auc_drop_is_held_against_the_test_auc_not_the_validation_auc() -> None:
    # The validation split chose the epoch: its AUC flatters the model (issue 21).
    assert reference_auc({"validation_auc": 0.9, "test_auc": 0.7}) == 0.7
    assert reference_auc({"validation_auc": 0.9}) == 0.9  # a manifest without a test AUC
    assert reference_auc({}) is None


def test_document_share_rules() -> None:
    alerts = evaluate_alerts(
        AlertRulesConf(),
        as_of=dt.date(2026, 1, 1),
        drift=[],
        backtest=[],
        fairness=[],
        shares=RunShares(empty_document_share=0.2, quarantined_share=0.02),
        reference_auc=0.8,
    )
    assert {(a.rule, a.severity, a.threshold) for a in alerts} == {
        ("empty_documents", "alert", 0.10),
        ("quarantined_documents", "warn", 0.01),
    }


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(dt.date(2025, 11, 28), 12) == dt.date(2026, 11, 28)
    assert add_months(dt.date(2025, 1, 31), 1) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2024, 12, 15), 3) == dt.date(2025, 3, 15)


def test_report_renders_every_section_from_aggregates() -> None:
    baseline = histograms_of(scored(1))
    current = histograms_of(scored(2, shift=0.3))
    drift = drift_records(
        current.histograms, Reference("BASELINE", baseline.histograms, baseline.edges)
    )
    data = ReportData(
        run_id="run-1",
        as_of=dt.date(2026, 11, 28),
        model_version="m1",
        histograms=current.histograms,
        baseline=baseline.histograms,
        psi_edges=baseline.edges,
        drift=drift,
        migration=[],
        backtest=[],
        fairness=[],
        alerts=[
            Alert("psi_pd_baseline", "alert", "population_stability_index", None, None, 0.3, 0.25)
        ],
        notes=["no previous successful run"],
    )
    trends = (
        [TrendPoint("2025-11-28 abc", {"BASELINE": 0.02, "CONSECUTIVE": None})],
        [TrendPoint("2026-11-28 def", {"AUC": 0.7, "Gini": 0.4})],
    )
    page = render_report(data, CONF, trends)
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page
    assert "psi_pd_baseline" in page and "no previous successful run" in page
    assert page.count("<svg") == 4  # histogram, PSI, two trends (no migration or backtest yet)
    assert "No previous run to migrate from." in page
    assert "No challenger was scored in shadow in this run." in page


def test_report_shows_each_challenger_against_the_champion() -> None:
    current = histograms_of(scored(2))
    common = {
        "model_name": "demo",
        "alias": "challenger",
        "model_version": "v2",
        "champion_version": "v1",
        "obligors": 40,
        "grade_flips": 6,
        "grade_flip_share": 0.15,
        "decision_flips": 2,
        "decision_flip_share": 0.05,
        "psi": 0.0123,
    }
    matured = {
        "matured_as_of": dt.date(2025, 11, 28),
        "matured_champion_version": "v0",
        "matured_obligors": 38,
        "matured_defaults": 3,
        "champion_auc": 0.71,
        "challenger_auc": 0.78,
        "auc_difference": 0.07,
        "auc_difference_pvalue": 0.0421,
    }
    empty = dict.fromkeys(matured)
    data = ReportData(
        run_id="run-1",
        as_of=dt.date(2026, 11, 28),
        model_version="v1",
        histograms=current.histograms,
        baseline=None,
        psi_edges={},
        drift=[],
        migration=[],
        backtest=[],
        fairness=[],
        alerts=[],
        shadow=[
            {**common, "segment": "sme", **empty},
            {**common, "segment": "all", **matured},
        ],
    )
    page = render_report(data, CONF, ([], []))
    section = page.split("<h2>Champion and challengers</h2>")[1]
    assert "Champion v1" in section
    rows = re.findall(r"<tr>(.*?)</tr>", section)
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    assert cells[1] == ["demo@challenger (v2)", "all", "40", "6 (0.15)", "2 (0.05)", "0.0123"]
    assert cells[2][1] == "sme"  # the whole portfolio first, then each segment
    assert cells[4] == [
        "demo@challenger (v2)", "2025-11-28", "v0", "38", "3", "0.71", "0.78", "0.07", "0.0421"
    ]  # fmt: skip
    assert len(cells) == 5  # the matured table has the whole portfolio's row only


def test_column_histogram_counts_non_nulls() -> None:
    hist = ColumnHistogram(rows=10, nulls=3, numeric=Histogram.from_values(PD_GRID, np.zeros(7)))
    assert hist.count == 7


@pytest.mark.parametrize(
    ("estimated", "severity"), [(0.78, None), (0.765, "warn"), (0.74, "alert"), (None, None)]
)
def test_the_estimated_auc_alerts_against_the_test_auc(
    estimated: float | None, severity: str | None
) -> None:
    alerts = evaluate_alerts(
        AlertRulesConf(),
        as_of=dt.date(2026, 1, 1),
        drift=[],
        backtest=[],
        fairness=[],
        shares=RunShares(None, None),
        reference_auc=0.80,
        estimated_auc=estimated,
    )
    fired = [(a.rule, a.severity) for a in alerts]
    assert fired == ([("estimated_auc_drop", severity)] if severity else [])
