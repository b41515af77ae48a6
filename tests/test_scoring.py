from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import PD_ATOL
from pyspark.sql import functions as F

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.config import load_config
from riskudf.model.artifact import ArtifactError
from riskudf.scoring.pipeline import score_portfolio

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
        make_conf(
            database=small_lakehouse,
            model_dir=tiny_model,
            scoring__partitions=3,
            reasons__decisions=["review", "decline"],
            monitoring__enabled=False,  # monitored in test_monitoring*; here the writes
        )
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
    assert all(abs(after[k] - before[k]) <= PD_ATOL for k in after)  # a rerun's batches may differ
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

    # Every written row: grade and decision as the master scale says, the lineage of the run.
    library = {reason.code for reason in conf.reasons.library}
    for row in rows:
        upper = [b.upper_pd for b in conf.grading.master_scale]
        grade = next(
            b.grade
            for b in conf.grading.master_scale
            if row["pd"] < b.upper_pd or b.upper_pd == upper[-1]
        )
        decision = (
            "decline"
            if row["pd"] >= conf.grading.decline_from_pd
            else "review"
            if row["pd"] >= conf.grading.review_from_pd
            else "approve"
        )
        assert (row["grade"], row["decision"]) == (grade, decision)
        # Reason codes for review and decline only, from the conf library, largest first.
        assert (row["reasons"] is None) == (decision == "approve")
        weights = [r["weight"] for r in row["reasons"] or []]
        assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
        assert len(weights) <= 4
        assert {r["code"] for r in row["reasons"] or []} <= library
        assert (row["as_of_date"], row["model_version"]) == (AS_OF, "tiny-1")
        assert row["n_tokens"] > 2 and row["truncated"] == (row["n_tokens"] > 64)
    assert first.grade_counts == {g: n for g, n in Counter(r["grade"] for r in rows).items()}
    detail = spark.sql("DESCRIBE DETAIL score_test.scored_portfolio").first()
    assert detail["partitionColumns"] == ["as_of_date"]
    # One commit per run, replacing only that date.
    history = spark.sql("DESCRIBE HISTORY score_test.scored_portfolio").orderBy("version")
    last = history.collect()[-1]
    assert last["operation"] == "WRITE"
    assert last["operationParameters"]["mode"] == "Overwrite"
    assert "2026-11-28" in last["operationParameters"]["predicate"]


def test_tampered_or_truncated_model_fails_before_writing(
    spark, small_lakehouse, tiny_model, make_conf, tmp_path: Path
) -> None:
    def versions() -> dict[str, int]:
        return {
            t: spark.sql(f"DESCRIBE HISTORY score_test.{t}").count()
            for t in ("scored_portfolio", "scoring_quarantine", "score_runs", "scoring_locks")
            if spark.catalog.tableExists(f"score_test.{t}")
        }

    for damage in ("tamper", "truncate"):
        broken = tmp_path / damage
        shutil.copytree(tiny_model, broken)
        if damage == "tamper":
            (broken / "tokenizer_config.json").write_text("{}")
        else:
            weights = broken / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:1000])
        conf = load_config(make_conf(database=small_lakehouse, model_dir=broken))
        before = versions()
        with pytest.raises(ArtifactError, match="sha256 mismatch"):
            score_portfolio(spark, conf, as_of=dt.date(2026, 9, 30))
        assert versions() == before


def test_a_table_that_is_not_delta_is_named_in_the_error(spark) -> None:
    from riskudf.lakehouse.delta import SchemaError, latest_version

    spark.sql("CREATE DATABASE IF NOT EXISTS plain")
    spark.sql("CREATE TABLE IF NOT EXISTS plain.portfolio (obligor_id STRING) USING parquet")
    with pytest.raises(SchemaError, match=r"table plain\.portfolio is not a Delta table"):
        latest_version(spark, "plain.portfolio")


def test_an_older_scored_table_gets_the_reasons_column(spark) -> None:
    """A scored_portfolio made before reason codes gets the column (nullable) on the next run,
    its rows keep null reasons."""
    from riskudf.lakehouse.delta import ensure_table
    from riskudf.lakehouse.schemas import SCORED_PORTFOLIO_COLUMNS

    table = "older_scored.scored_portfolio"
    spark.sql("CREATE DATABASE IF NOT EXISTS older_scored")
    old = tuple(c for c in SCORED_PORTFOLIO_COLUMNS if c[0] != "reasons")
    ensure_table(spark, table, old, partitioned_by="as_of_date")
    spark.sql(
        f"INSERT INTO {table} (obligor_id, as_of_date, pd, grade, decision, n_tokens, truncated, "
        "n_chunks, n_filings, report_age_days, model_version, run_id, scored_at) VALUES ('A', "
        "DATE'2026-11-01', 0.3, 'CC', 'decline', 5, false, 1, 0, 3, 'm', 'r', "
        "TIMESTAMP'2026-11-01 00:00:00')"
    )
    ensure_table(spark, table, SCORED_PORTFOLIO_COLUMNS, partitioned_by="as_of_date")
    field = spark.table(table).schema["reasons"]
    assert field.dataType.simpleString() == (
        "array<struct<code:string,description:string,weight:double>>"
    )
    assert field.nullable
    assert [r["reasons"] for r in spark.table(table).collect()] == [None]
