"""Monitoring on real Spark and Delta: scored runs of a small demo lakehouse with the tiny model.

Every table is checked against a direct pandas/numpy/scikit-learn computation on the same rows,
collected here only because the test data is small.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from test_jobs import job

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.config import load_config
from riskudf.lakehouse.schemas import MONITOR_TABLES
from riskudf.model.artifact import read_manifest, write_manifest
from riskudf.monitoring.report import SECTIONS
from riskudf.monitoring.run import monitor_run
from riskudf.scoring.pipeline import score_portfolio

COHORT = dt.date(2025, 11, 28)  # the demo's outcome observation date
LATER = dt.date(2026, 11, 28)
N = 60


@pytest.fixture(scope="module")
def lakehouse(spark) -> str:
    write_demo_tables(
        spark, database="mon", n_obligors=N, spec=DemoSpec(seed=5), filing_lookback_days=730
    )
    return "mon"


def scored_frame(spark, database: str, run_id: str) -> pd.DataFrame:
    rows = spark.table(f"{database}.scored_portfolio").where(F.col("run_id") == run_id)
    portfolio = spark.table(f"{database}.portfolio").select("obligor_id", "segment", "age_band")
    return rows.join(portfolio, "obligor_id").toPandas()


def table(spark, database: str, name: str, run_id: str) -> pd.DataFrame:
    return spark.table(f"{database}.{name}").where(F.col("run_id") == run_id).toPandas()


def test_two_dates_fill_every_monitor_table_with_exact_aggregates(
    spark, lakehouse, tiny_model, make_conf, tmp_path: Path
) -> None:
    conf = load_config(
        make_conf(
            database=lakehouse,
            model_dir=tiny_model,
        )
    )
    first = score_portfolio(spark, conf, as_of=COHORT)
    second = score_portfolio(spark, conf, as_of=LATER)
    assert first.monitoring is not None and second.monitoring is not None
    assert "no previous successful run: CONSECUTIVE drift and migration skipped" in (
        first.monitoring.notes
    )
    run = second.run_id
    written = second.monitoring.rows_written
    assert set(written) == set(MONITOR_TABLES)
    for name in MONITOR_TABLES:
        if name != "monitor_alerts":
            assert written[name] > 0, name
        assert len(table(spark, lakehouse, name, run)) == written[name], name

    current = scored_frame(spark, lakehouse, run)
    previous = scored_frame(spark, lakehouse, first.run_id)

    # Profile: whole-table pd and a segment slice, against pandas.
    profile = table(spark, lakehouse, "monitor_profile", run)
    whole_pd = profile[profile.slice_key.isna() & (profile.column_name == "pd")].iloc[0]
    assert whole_pd["count"] == len(current) and whole_pd["num_nulls"] == 0
    assert whole_pd["avg"] == pytest.approx(current.pd.mean(), rel=1e-12)
    assert whole_pd["stddev"] == pytest.approx(current.pd.std(), rel=1e-9)
    assert (whole_pd["min"], whole_pd["max"]) == (current.pd.min(), current.pd.max())
    assert whole_pd["window_start"] == LATER and whole_pd["granularity"] == "1 day"
    retail_tokens = profile[
        (profile.slice_key == "segment")
        & (profile.slice_value == "retail")
        & (profile.column_name == "n_tokens")
    ].iloc[0]
    retail = current[current.segment == "retail"]
    assert retail_tokens["count"] == len(retail)
    assert retail_tokens["distinct_count"] == retail.n_tokens.nunique()
    assert retail_tokens["quantiles"][0] == retail.n_tokens.min()
    assert retail_tokens["quantiles"][-1] == retail.n_tokens.max()
    grades = profile[profile.slice_key.isna() & (profile.column_name == "grade")].iloc[0]
    expected_items = current.grade.value_counts()
    assert {item["item"]: item["count"] for item in grades["frequent_items"]} == dict(
        expected_items
    )
    ages = profile[(profile.slice_key == "age_band") & (profile.column_name == ":table")]
    expected_ages = current.age_band.fillna(":null").value_counts()
    assert dict(zip(ages.slice_value, ages["count"], strict=True)) == dict(expected_ages)

    # Drift against the previous run, recomputed from both runs' rows.
    drift = table(spark, lakehouse, "monitor_drift", run)
    assert set(drift.drift_type) == {"BASELINE", "CONSECUTIVE"}
    tokens = drift[
        (drift.drift_type == "CONSECUTIVE")
        & drift.slice_key.isna()
        & (drift.column_name == "n_tokens")
    ].iloc[0]
    from scipy import stats

    expected_ks = stats.ks_2samp(current.n_tokens, previous.n_tokens, method="asymp")
    assert tokens["ks_statistic"] == pytest.approx(expected_ks.statistic, abs=1e-12)
    assert tokens["ks_pvalue"] == pytest.approx(expected_ks.pvalue, rel=1e-9)
    assert tokens["wasserstein_distance"] == pytest.approx(
        stats.wasserstein_distance(current.n_tokens, previous.n_tokens), rel=1e-12
    )
    assert tokens["reference_run_id"] == first.run_id
    # Obligors without a report on 2025-11-28 were quarantined then, scored now.
    assert tokens["count_delta"] == len(current) - len(previous)
    grade_drift = drift[
        (drift.drift_type == "CONSECUTIVE")
        & drift.slice_key.isna()
        & (drift.column_name == "grade")
    ].iloc[0]
    crosstab = pd.crosstab(
        np.r_[np.zeros(len(current)), np.ones(len(previous))],
        np.r_[current.grade.to_numpy(), previous.grade.to_numpy()],
    )
    if crosstab.shape[1] > 1:
        assert grade_drift["chi_squared_statistic"] == pytest.approx(
            stats.chi2_contingency(crosstab.to_numpy(), correction=False).statistic
        )

    # Migration against the first run: a crosstab of the two runs' grades.
    migration = table(spark, lakehouse, "monitor_migration", run)
    cells = migration[(migration.record_type == "cell") & migration.slice_key.isna()]
    both = current[["obligor_id", "grade"]].merge(
        previous[["obligor_id", "grade"]], on="obligor_id", suffixes=("_to", "_from")
    )
    expected_cells = both.groupby(["grade_from", "grade_to"]).size()
    assert {(r.from_grade, r.to_grade): r["count"] for _, r in cells.iterrows()} == dict(
        expected_cells
    )
    summary = migration[(migration.record_type == "summary") & migration.slice_key.isna()].iloc[0]
    assert summary["count"] == len(both) and summary["previous_run_id"] == first.run_id
    assert summary["new_obligors"] == len(current) - len(both)
    assert summary["stable_share"] == pytest.approx(np.mean(both.grade_from == both.grade_to))

    # Backtest of the matured 2025-11-28 cohort against sklearn.
    outcomes = spark.table(f"{lakehouse}.outcomes").toPandas()
    outcomes = outcomes[outcomes.observation_date == COHORT]
    cohort = previous.merge(outcomes, on="obligor_id")
    backtest = table(spark, lakehouse, "monitor_backtest", run)
    overall = backtest[backtest.slice_key.isna() & backtest.grade.isna()].iloc[0]
    assert overall["cohort_date"] == COHORT and overall["cohort_run_id"] == first.run_id
    assert (overall["n"], overall["defaults"]) == (len(cohort), cohort.default_12m.sum())
    assert overall["brier"] == pytest.approx(brier_score_loss(cohort.default_12m, cohort.pd))
    assert overall["log_loss"] == pytest.approx(log_loss(cohort.default_12m, cohort.pd))
    assert overall["mean_pd"] == pytest.approx(cohort.pd.mean())
    if 0 < cohort.default_12m.sum() < len(cohort):
        auc = roc_auc_score(cohort.default_12m, cohort.pd)
        assert abs(overall["auc"] - auc) <= overall["auc_error_bound"] + 1e-12
        assert overall["gini"] == pytest.approx(2 * overall["auc"] - 1)
    per_grade = backtest[backtest.slice_key.isna() & backtest.grade.notna()]
    expected_grades = cohort.groupby("grade").agg(n=("pd", "size"), d=("default_12m", "sum"))
    assert {r.grade: (r["n"], r["defaults"]) for _, r in per_grade.iterrows()} == {
        g: (r.n, r.d) for g, r in expected_grades.iterrows()
    }
    lower, upper = stats.beta.ppf(
        [0.025, 0.975], overall["defaults"] + 0.5, overall["n"] - overall["defaults"] + 0.5
    )
    assert (overall["jeffreys_lower"], overall["jeffreys_upper"]) == pytest.approx((lower, upper))

    # PD-only estimates: this run's, and the matured cohort's beside its backtest.
    estimates = table(spark, lakehouse, "monitor_estimates", run)
    whole = estimates[estimates.grade.isna()].set_index("cohort_date")
    now, then = whole.loc[LATER], whole.loc[COHORT]
    assert now["obligors"] == len(current) and now["band_level"] == 0.9
    assert now["expected_dr"] == pytest.approx(current.pd.mean())
    assert now["dr_lower"] <= now["expected_dr"] <= now["dr_upper"]
    assert pd.isna(now["realised_dr"])
    by_grade = estimates[estimates.grade.notna() & (estimates.cohort_date == LATER)]
    assert dict(zip(by_grade.grade, by_grade.expected_dr, strict=True)) == pytest.approx(
        current.groupby("grade").pd.mean().to_dict()
    )
    assert then["expected_dr"] == pytest.approx(cohort.pd.mean())
    assert (then["realised_obligors"], then["realised_defaults"]) == (
        overall["n"],
        overall["defaults"],
    )
    assert then["realised_dr"] == pytest.approx(overall["observed_dr"])

    # Fairness: this run's approval rates by age band, and equal opportunity on the cohort.
    fairness = table(spark, lakehouse, "monitor_fairness", run)
    now = fairness[fairness.cohort_date == LATER].set_index("group_value")
    bands = current.dropna(subset=["age_band"])
    rates = bands.groupby("age_band")["decision"].apply(lambda d: np.mean(d == "approve"))
    assert set(now.index) == set(rates.index)
    assert now.approval_rate.to_dict() == pytest.approx(rates.to_dict())
    if rates.get("36-50"):
        assert now.disparate_impact.to_dict() == pytest.approx((rates / rates["36-50"]).to_dict())
    assert now.equal_opportunity_difference.isna().all()
    matured = fairness[fairness.cohort_date == COHORT]
    assert len(matured) > 0 and matured.n_non_default.notna().all()

    # The report exists, has every section and no obligor ids or document text.
    report = second.monitoring.report_path
    assert report == tmp_path / "reports" / "2026-11-28" / f"{run}.html"
    page = report.read_text()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page
    assert "OBL" not in page and "CREDIT REPORT" not in page
    assert page.count("<svg") >= 5

    # The monitoring log records the alerts; monitoring the run again replaces, never duplicates.
    logged = spark.table(f"{lakehouse}.monitor_runs").where(F.col("run_id") == run).collect()
    assert [(r["status"], r["alerts_fired"]) for r in logged] == [
        ("success", second.monitoring.alerts_fired)
    ]
    again = monitor_run(
        spark,
        conf,
        run_id=run,
        as_of=LATER,
        manifest=read_manifest(tiny_model),
        model_dir=tiny_model,
    )
    for name in MONITOR_TABLES:
        assert len(table(spark, lakehouse, name, run)) == again.rows_written[name] == written[name]
    alerts = table(spark, lakehouse, "monitor_alerts", run)
    assert alerts.alert_id.is_unique
    assert set(alerts.status) <= {"open"} and set(alerts.severity) <= {"warn", "alert"}


def test_a_model_without_baseline_skips_baseline_drift(
    spark, lakehouse, tiny_model, make_conf, tmp_path: Path, caplog
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    (bare / "baseline.json").unlink()
    write_manifest(bare, read_manifest(bare))
    conf = load_config(make_conf(database=lakehouse, model_dir=bare))
    with caplog.at_level(logging.INFO, logger="riskudf.monitoring"):
        result = score_portfolio(spark, conf, as_of=dt.date(2026, 10, 31))
    assert result.status == "success" and result.monitoring is not None
    assert "model has no baseline: BASELINE drift skipped" in result.monitoring.notes
    assert any("has no baseline.json" in r.getMessage() for r in caplog.records)
    drift = table(spark, lakehouse, "monitor_drift", result.run_id)
    assert set(drift.drift_type) == {"CONSECUTIVE"}


def test_tiny_model_carries_a_checksummed_baseline(tiny_model: Path) -> None:
    manifest = read_manifest(tiny_model)
    assert "baseline.json" in manifest.files
    document = json.loads((tiny_model / "baseline.json").read_text())
    assert document["format"] == "riskudf-baseline/1"
    assert len(document["psi_edges"]["pd"]) == 9


def test_drift_is_zero_against_itself_and_raised_by_a_population_shift(
    spark, tiny_model, make_conf, tmp_path: Path
) -> None:
    database, day, n = "mon_shift", dt.date(2026, 6, 30), 80
    write_demo_tables(
        spark, database=database, n_obligors=n, spec=DemoSpec(seed=9), filing_lookback_days=730
    )
    conf_path = make_conf(
        database=database,
        model_dir=tiny_model,
        monitoring__slice_columns=["segment"],
    )
    conf = load_config(conf_path)
    first = score_portfolio(spark, conf, as_of=day)
    same = score_portfolio(spark, conf, as_of=day)  # the same data and model: a run vs itself
    drift = table(spark, database, "monitor_drift", same.run_id)
    consecutive = drift[drift.drift_type == "CONSECUTIVE"]
    assert set(consecutive.reference_run_id) == {first.run_id}
    assert set(consecutive.column_name) >= {"pd", "n_tokens", "grade", "decision"}
    assert (consecutive.psi.abs() < 1e-9).all()
    assert (consecutive.js_distance.abs() < 1e-6).all()
    assert (consecutive.count_delta == 0).all()
    numeric = consecutive[consecutive.data_type == "numeric"]
    assert (numeric.ks_statistic <= 1e-9).all() and (numeric.wasserstein_distance < 1e-9).all()
    migration = table(spark, database, "monitor_migration", same.run_id)
    assert migration[migration.record_type == "summary"].stable_share.eq(1.0).all()

    # The demo generator's population shift, scored by the real job, which exits with code 3
    # because conf says alerts fail the run.
    assert (
        job("demo/make_data").main(
            ["--obligors", str(n), "--seed", "9", "--shift", "2.0", "--conf", str(conf_path)]
        )
        == 0
    )
    failing = make_conf(
        database=database,
        model_dir=tiny_model,
        monitoring__slice_columns=["segment"],
        monitoring__fail_on_alert=True,
        monitoring__alerts={"psi": {"warn": 0.10, "alert": 0.15}},
    )
    assert job("score_portfolio").main(["--as-of", day.isoformat(), "--conf", str(failing)]) == 3
    shifted_run = (
        spark.table(f"{database}.monitor_runs")
        .orderBy(F.col("finished_at").desc())
        .select("run_id", "status", "alerts_fired")
        .first()
    )
    assert shifted_run["status"] == "success" and shifted_run["alerts_fired"] > 0
    drift = table(spark, database, "monitor_drift", shifted_run["run_id"])
    tokens = drift[
        (drift.drift_type == "CONSECUTIVE")
        & drift.slice_key.isna()
        & (drift.column_name == "n_tokens")
    ].iloc[0]
    # Riskier text is longer (delinquencies, public records, covenant breaches): on the
    # baseline's token deciles the PSI is past the alert level of that conf.
    assert tokens["reference_run_id"] == same.run_id
    assert tokens["psi"] > 0.15 and tokens["avg_delta"] > 0
    alerts = table(spark, database, "monitor_alerts", shifted_run["run_id"])
    fired = alerts[(alerts.rule == "psi_n_tokens_consecutive") & alerts.slice_key.isna()]
    assert fired.severity.tolist() == ["alert"] and fired.threshold.tolist() == [0.15]
    assert fired.value.iloc[0] == pytest.approx(tokens["psi"])


def test_previous_run_in_a_table_from_before_the_new_columns(
    spark, tiny_model, make_conf, tmp_path: Path
) -> None:
    """An upgrade: the previous run's rows sit in a scored table that lacked n_chunks, n_filings
    and report_age_days, and that run has no stored histograms (no monitoring then)."""
    database = "mon_upgrade"
    write_demo_tables(
        spark, database=database, n_obligors=12, spec=DemoSpec(seed=9), filing_lookback_days=730
    )
    old = load_config(make_conf(database=database, model_dir=tiny_model, monitoring__enabled=False))
    first = score_portfolio(spark, old, as_of=COHORT)
    assert first.status == "success" and first.monitoring is None
    scored = f"{database}.scored_portfolio"
    before = spark.table(scored).drop("n_chunks", "n_filings", "report_age_days")
    rows, schema = before.toPandas(), before.schema  # the schema: reasons may be all null
    spark.sql(f"DROP TABLE {scored}")
    spark.createDataFrame(rows, schema).write.format("delta").partitionBy("as_of_date").saveAsTable(
        scored
    )
    spark.sql(
        f"UPDATE {database}.score_runs SET finished_at = current_timestamp() "
        f"WHERE run_id = '{first.run_id}'"
    )

    conf = load_config(
        make_conf(
            database=database,
            model_dir=tiny_model,
        )
    )
    second = score_portfolio(spark, conf, as_of=LATER)
    assert second.status == "success" and second.monitoring is not None
    drift = table(spark, database, "monitor_drift", second.run_id)
    consecutive = drift[(drift.drift_type == "CONSECUTIVE") & drift.slice_key.isna()]
    assert set(consecutive.column_name) == {
        "pd",
        "n_tokens",
        "grade",
        "decision",
        "truncated",
        "empty_document",
    }
    migration = table(spark, database, "monitor_migration", second.run_id)
    assert (migration.previous_run_id == first.run_id).all() and len(migration) > 0
