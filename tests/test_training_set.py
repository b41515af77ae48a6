"""Issue 21: the training-set builder assembles documents as scoring does, as known then.

One story on small inline inputs: three obligors and their reports and outcomes for one
observation date; after the knowledge time, A's exposure changes and obligor Z joins.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from test_jobs import job

from riskudf.config import load_config
from riskudf.lakehouse.delta import InputError, append, overwrite_table
from riskudf.scoring.pipeline import build_documents, load_model, read_inputs
from riskudf.training.dataset import (
    CohortError,
    build_training_set,
    cohort_rows,
    knowledge_time_of,
)

ROOT = Path(__file__).resolve().parents[1]
DB = "tset"
D = dt.date(2025, 6, 30)
TODAY = dt.date(2026, 11, 28)
PORTFOLIO = (
    "obligor_id string, segment string, exposure double, region string, legal_name string, "
    "street_address string"
)
REPORTS = "report_id string, obligor_id string, report_date date, text string"
OUTCOMES = "obligor_id string, observation_date date, default_12m int"


def report(name: str, body: str) -> str:
    return f"Subject: {name}, residing at 12 Mill Lane.\nPAYMENT HISTORY\n{body}"


@pytest.fixture(scope="module")
def story(spark, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tset")
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    data["scoring"]["model"] = str(tiny_model)
    data["spark"]["event_log_dir"] = str(folder / "spark-events")
    (folder / "tset.yaml").write_text(yaml.safe_dump(data))
    conf = load_config(folder / "tset.yaml")
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    people = {"A": "Ava Okafor", "B": "Noah Silva", "C": "Mia Rossi"}
    overwrite_table(
        spark.createDataFrame(
            [(o, "retail", 1000.0, "north", name, "12 Mill Lane") for o, name in people.items()],
            PORTFOLIO,
        ),
        f"{DB}.portfolio",
    )
    overwrite_table(
        spark.createDataFrame(
            [
                ("R-A1", "A", D - dt.timedelta(days=30), report(people["A"], "Paid as agreed.")),
                # Dated after the observation date: never in D's document.
                ("R-A2", "A", D + dt.timedelta(days=10), report(people["A"], "90 days past due.")),
                ("R-B1", "B", D - dt.timedelta(days=5), report(people["B"], "Two late payments.")),
                ("R-C1", "C", D - dt.timedelta(days=400), report(people["C"], "No history.")),
            ],
            REPORTS,
        ),
        f"{DB}.credit_reports",
    )
    overwrite_table(
        spark.createDataFrame(
            [],
            "filing_id string, obligor_id string, filing_date date, form_type string, text string",
        ),
        f"{DB}.filings",
    )
    overwrite_table(
        spark.createDataFrame(
            [("A", D, 1), ("B", D, 0), ("C", D, 0), ("A", dt.date(2024, 6, 30), 0), ("Z", D, 1)],
            OUTCOMES,
        ),
        f"{DB}.outcomes",
    )
    time.sleep(1.1)
    known = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    # After the knowledge time: A's exposure changes, Z joins with a report dated before D.
    spark.sql(f"UPDATE {DB}.portfolio SET exposure = 9999.0 WHERE obligor_id = 'A'")
    append(
        spark.createDataFrame(
            [("Z", "retail", 50.0, "south", "Zoe Khan", "1 Elm Street")], PORTFOLIO
        ),
        f"{DB}.portfolio",
    )
    append(
        spark.createDataFrame(
            [("R-Z1", "Z", D - dt.timedelta(days=3), report("Zoe Khan", "Paid as agreed."))],
            REPORTS,
        ),
        f"{DB}.credit_reports",
    )
    then = build_training_set(spark, conf, [D], today=TODAY, inputs_as_of=known)
    as_then = {
        r["obligor_id"]: r.asDict() for r in spark.table(f"{DB}.training_documents").collect()
    }
    return conf, known, then, as_then, folder / "tset.yaml"


def test_training_documents_are_the_scoring_jobs_documents(spark, story) -> None:
    conf, known, _, rows, _ = story
    inputs = read_inputs(spark, conf, knowledge_time=known)
    documents = build_documents(
        inputs, conf, load_model(spark, conf, inputs), as_of=D, today=TODAY
    ).scorable
    scored = {r["obligor_id"]: r["document"] for r in documents.collect()}
    assert sorted(rows) == sorted(scored) == ["A", "B", "C"]
    for obligor, text in scored.items():
        assert rows[obligor]["text"] == text
    assert "past due" not in rows["A"]["text"]  # R-A2 is dated after D
    assert "Ava Okafor" not in rows["A"]["text"] and "[NAME]" in rows["A"]["text"]
    assert {"legal_name", "street_address"}.isdisjoint(
        spark.table(f"{DB}.training_documents").columns
    )
    assert {o: r["default_12m"] for o, r in rows.items()} == {"A": 1, "B": 0, "C": 0}
    assert {r["observation_date"] for r in rows.values()} == {D}


def test_a_portfolio_change_after_the_knowledge_time_does_not_reach_the_row(spark, story) -> None:
    conf, known, then, rows, _ = story
    assert rows["A"]["exposure"] == 1000.0 and "Z" not in rows
    assert then[0].knowledge_time == known
    assert rows["A"]["knowledge_time"].replace(tzinfo=None) == known.astimezone().replace(
        tzinfo=None
    )
    current = cohort_rows(spark, conf, D, knowledge="current", today=TODAY).rows
    now = {r["obligor_id"]: r["exposure"] for r in current.collect()}
    assert now == {"A": 9999.0, "B": 1000.0, "C": 1000.0, "Z": 50.0}


def test_a_cohort_whose_outcomes_have_not_matured_is_refused(spark, story) -> None:
    conf = story[0]
    with pytest.raises(CohortError, match="mature on 2026-06-30"):
        cohort_rows(spark, conf, D, knowledge="current", today=dt.date(2026, 6, 29))


def test_knowledge_at_the_observation_date_needs_the_tables_history(spark, story) -> None:
    conf = story[0]
    # The tables were written today: nobody knew them at the end of D.
    with pytest.raises(InputError, match=rf"table {DB}.portfolio has no version"):
        cohort_rows(spark, conf, D, knowledge="observation", today=TODAY)
    assert knowledge_time_of(D, "Europe/Berlin") == dt.datetime(
        2025, 6, 30, 21, 59, 59, 999999, tzinfo=dt.UTC
    )


def test_the_job_builds_the_table_and_reports_each_cohort(spark, story) -> None:
    conf_path = story[4]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = job("build_training_set").main(
            ["--dates", str(D), "--knowledge", "current", "--conf", str(conf_path)]
        )
    assert code == 0
    assert (
        f"{DB}.training_documents: observation date {D}: 4 rows, 2 defaults; inputs as known at "
        "current versions"
    ) in out.getvalue()
    assert job("build_training_set").main(["--dates", str(D), "--conf", str(conf_path)]) == 2
    table = spark.table(f"{DB}.training_documents")
    assert table.count() == 4 and table.where(F.col("knowledge_time").isNull()).count() == 4
