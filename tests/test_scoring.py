from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from riskudf.config import load_config
from riskudf.demo import DemoSpec, write_demo_tables
from riskudf.model.artifact import ArtifactError
from riskudf.scoring import score_portfolio

AS_OF = dt.date(2026, 11, 28)


@pytest.fixture(scope="module")
def small_lakehouse(spark) -> str:
    write_demo_tables(
        spark, database="score_test", n_obligors=30, spec=DemoSpec(seed=3), filing_lookback_days=730
    )
    return "score_test"


def test_rerun_replaces_the_date_and_logs_two_runs(
    spark, small_lakehouse, tiny_model, make_conf
) -> None:
    conf = load_config(
        make_conf(database=small_lakehouse, model_dir=tiny_model, scoring__partitions=3)
    )
    other_date = dt.date(2026, 10, 31)
    first_other = score_portfolio(spark, conf, as_of=other_date)
    first = score_portfolio(spark, conf, as_of=AS_OF)
    table = spark.table("score_test.scored_portfolio")
    before = {r["obligor_id"]: r["pd"] for r in table.where(F.col("as_of_date") == AS_OF).collect()}
    second = score_portfolio(spark, conf, as_of=AS_OF)
    rows = table.where(F.col("as_of_date") == AS_OF).collect()
    after = {r["obligor_id"]: r["pd"] for r in rows}

    assert first.rows_in == first.rows_scored == second.rows_scored == 30
    assert len(rows) == 30 and len(after) == 30
    assert {r["run_id"] for r in rows} == {second.run_id}
    assert after.keys() == before.keys()
    assert all(abs(after[k] - before[k]) < 1e-9 for k in after)
    # The other date's rows are untouched by the rerun.
    other = table.where(F.col("as_of_date") == other_date).select("run_id").distinct().collect()
    assert [r["run_id"] for r in other] == [first_other.run_id]
    runs = (
        spark.table("score_test.score_runs")
        .where(F.col("as_of_date") == AS_OF)
        .orderBy("started_at")
        .collect()
    )
    assert [(r["run_id"], r["status"], r["rows_scored"]) for r in runs] == [
        (first.run_id, "success", 30),
        (second.run_id, "success", 30),
    ]
    assert runs[0]["input_versions"] == {
        "score_test.portfolio": 0,
        "score_test.credit_reports": 0,
        "score_test.filings": 0,
    }
    assert runs[0]["model_version"] == "tiny-1"
    assert sum(first.grade_counts.values()) == 30


def test_tampered_model_fails_before_writing(
    spark, small_lakehouse, tiny_model, make_conf, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "tokenizer_config.json").write_text("{}")
    conf = load_config(make_conf(database=small_lakehouse, model_dir=broken))
    day = dt.date(2026, 9, 30)
    with pytest.raises(ArtifactError):
        score_portfolio(spark, conf, as_of=day)
    assert spark.table("score_test.scored_portfolio").where(F.col("as_of_date") == day).count() == 0
    failed = spark.table("score_test.score_runs").where(F.col("as_of_date") == day).collect()
    assert [(r["status"], r["error"], r["rows_scored"]) for r in failed] == [
        ("failed", "ArtifactError", 0)
    ]
