"""Point in time: knowledge time, reproduction, history and the environment as lineage.

One story on small inline inputs with the tiny model (module-scoped: each step is a real run):
run 1 scores D1; then a report dated before D1 arrives, another report is corrected in place and
an obligor joins the portfolio; a rerun of D1 with --inputs-as-of the time of run 1 must ignore
all of it; --reproduce of run 1 finds no difference from its recorded versions and finds the
differences when it reads the current inputs; run 1's rows stay in scored_history; a changed
library version rescores every row of an incremental run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from test_jobs import job

from riskudf.bi.views import publish_bi_objects
from riskudf.config import RiskConf, load_config
from riskudf.entry import iso_timestamp
from riskudf.lakehouse.delta import InputError, append, overwrite_table, version_at
from riskudf.monitoring.run import backtest_cohorts, cohort_attributes, portfolio_of_run
from riskudf.scoring import lineage
from riskudf.scoring.incremental import score_conf_key
from riskudf.scoring.pipeline import purge_expired, score_portfolio
from riskudf.scoring.reproduce import compare_scores, environment_changes

ROOT = Path(__file__).resolve().parents[1]
DB = "pit"
D1 = dt.date(2026, 11, 20)
REPORT = "Payment history: {n} accounts, all paid as agreed. Utilisation {u} percent."
LATE = "Collections: two accounts 90 days past due; a county court judgment was entered."
REPORTS = "report_id string, obligor_id string, report_date date, text string"


def commit_gap() -> None:
    """Delta commit times have millisecond resolution: keep commits clearly apart."""
    time.sleep(1.1)


def write_conf(path: Path, model_dir: Path) -> RiskConf:
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    data["scoring"]["model"] = str(model_dir)
    data["scoring"]["partitions"] = 2
    data["monitoring"]["enabled"] = False
    data["monitoring"]["report_dir"] = str(path.parent / "reports")
    data["spark"]["event_log_dir"] = str(path.parent / "spark-events")
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def rows_of(spark, table: str, run_id: str) -> dict[str, dict]:
    frame = spark.table(table).where(F.col("run_id") == run_id)
    return {r["obligor_id"]: r.asDict() for r in frame.collect()}


def run_log(spark, run_id: str) -> dict:
    row = spark.table(f"{DB}.score_runs").where(F.col("run_id") == run_id).first()
    assert row is not None
    return row.asDict(recursive=True)


def reproduce_job(argv: list[str]) -> tuple[int, str]:
    """jobs/score_portfolio.py's exit code and stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = job("score_portfolio").main(argv)
    return code, out.getvalue()


def reproduction_of(spark, stdout: str) -> dict:
    """The run log row of the reproduction the job printed (run log: ... run_id <id>)."""
    run_id = stdout.rsplit("run_id ", 1)[1].split()[0]
    return run_log(spark, run_id)


@pytest.fixture(scope="module")
def story(spark, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    conf_path = tmp_path_factory.mktemp("pit") / "pit.yaml"
    conf = write_conf(conf_path, tiny_model)
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    portfolio = spark.createDataFrame(
        [(o, "retail", 1000.0) for o in "ABCDE"],
        "obligor_id string, segment string, exposure double",
    )
    reports = spark.createDataFrame(
        [
            (f"R-{o}", o, dt.date(2026, 6, 1), REPORT.format(n=i + 2, u=10 * i + 5))
            for i, o in enumerate("ABCDE")
        ],
        REPORTS,
    )
    filings = spark.createDataFrame(
        [], "filing_id string, obligor_id string, filing_date date, form_type string, text string"
    )
    overwrite_table(portfolio, f"{DB}.portfolio")
    overwrite_table(reports, f"{DB}.credit_reports")
    overwrite_table(filings, f"{DB}.filings")
    first = score_portfolio(spark, conf, as_of=D1)
    commit_gap()
    known = dt.datetime.now(dt.UTC)  # what run 1 knew, and nothing since
    commit_gap()
    # Written after the knowledge time: a report dated before D1 for A, a new obligor F with a
    # report, and C's report corrected in place.
    append(
        spark.createDataFrame(
            [
                ("R-A2", "A", D1 - dt.timedelta(days=1), LATE),
                ("R-F", "F", D1, REPORT.format(n=1, u=99)),
            ],
            REPORTS,
        ),
        f"{DB}.credit_reports",
    )
    append(
        spark.createDataFrame(
            [("F", "retail", 500.0)], "obligor_id string, segment string, exposure double"
        ),
        f"{DB}.portfolio",
    )
    spark.sql(f"UPDATE {DB}.credit_reports SET text = '{LATE}' WHERE report_id = 'R-C'")
    rerun = score_portfolio(spark, conf, as_of=D1, inputs_as_of=known)
    # The job's --reproduce, from the recorded versions and from the current inputs.
    same = reproduce_job(["--reproduce", first.run_id, "--conf", str(conf_path)])
    current = dt.datetime.now(dt.UTC).isoformat()
    now = reproduce_job(
        ["--reproduce", first.run_id, "--inputs-as-of", current, "--conf", str(conf_path)]
    )
    publish_bi_objects(spark, conf)
    return conf, first, known, rerun, same, now


def test_a_rerun_as_known_at_the_first_run_ignores_what_came_later(spark, story):
    _, first, _, rerun, _, _ = story
    assert rerun.rows_scored == first.rows_scored == 5
    again = rows_of(spark, f"{DB}.scored_portfolio", rerun.run_id)
    before = rows_of(spark, f"{DB}.scored_history", first.run_id)
    assert sorted(again) == sorted(before) == list("ABCDE")  # F joined later
    for obligor in "ABCDE":  # A's late report and C's correction are not read
        assert again[obligor]["pd"] == pytest.approx(before[obligor]["pd"], abs=1e-6)
        assert again[obligor]["fingerprint"] == before[obligor]["fingerprint"]


def test_the_run_log_records_knowledge_time_versions_and_late_records(spark, story):
    _, first, known, rerun, _, _ = story
    log = run_log(spark, rerun.run_id)
    assert log["knowledge_time"].astimezone(dt.UTC) == known  # naive: this process's zone
    assert log["input_versions"] == run_log(spark, first.run_id)["input_versions"]
    # Late: R-A2 and R-F (dated on or before D1); C's corrected row is not a new record.
    assert log["late_records"] == {
        f"{DB}.portfolio": 1,
        f"{DB}.credit_reports": 2,
        f"{DB}.filings": 0,
    }
    assert run_log(spark, first.run_id)["late_records"] == {
        f"{DB}.portfolio": 0,
        f"{DB}.credit_reports": 0,
        f"{DB}.filings": 0,
    }
    env = log["environment"]
    assert set(env) == {"python", *lineage.LIBRARIES}
    assert env["torch"] == lineage.environment()["torch"] != "absent"
    precisions = {w["precision"] for w in log["scoring_workers"]}
    assert len(precisions) == 1 and precisions <= {"fp32", "bf16"}  # auto: by the CPU


def test_reproducing_a_run_from_its_recorded_versions_finds_no_difference(spark, story):
    _, first, _, _, (code, stdout), _ = story
    assert code == 0
    assert f"reproduction of run {first.run_id} (recorded versions): reproduced" in stdout
    log = reproduction_of(spark, stdout)
    assert (log["status"], log["mode"]) == ("reproduced", "reproduce")
    found = log["reproduction"]
    assert found["of_run_id"] == first.run_id
    assert (found["rows_compared"], found["rows_differing"], found["rows_missing"]) == (5, 0, 0)
    assert found["max_pd_diff"] <= 1e-6
    assert log["input_versions"] == run_log(spark, first.run_id)["input_versions"]
    recorded = {w["precision"] for w in run_log(spark, first.run_id)["scoring_workers"]}
    assert {found["precision"]} == recorded
    assert found["environment_changes"] == ""
    assert "libraries       as recorded" in stdout
    # A reproduction publishes nothing.
    assert rows_of(spark, f"{DB}.scored_history", log["run_id"]) == {}


def test_reproducing_from_current_inputs_finds_the_changed_rows(spark, story):
    _, _, _, _, _, (code, stdout) = story
    assert code == 5
    assert "NOT reproduced" in stdout
    found = reproduction_of(spark, stdout)["reproduction"]
    # A (a later report) and C (a corrected report) differ; F is only in the reproduction.
    assert (found["rows_compared"], found["rows_missing"]) == (5, 1)
    assert found["rows_differing"] >= 2
    assert found["max_pd_diff"] > 1e-6
    assert f"rows differing  {found['rows_differing']} " in stdout


def test_a_superseded_run_stays_queryable_with_when_it_was_current(spark, story):
    _, first, _, rerun, _, _ = story
    assert rows_of(spark, f"{DB}.scored_portfolio", first.run_id) == {}  # replaced by the rerun
    history = spark.sql(
        "SELECT run_id, count(*) AS n, max(superseded_by_run_id) AS by, "
        "bool_or(is_current) AS cur, max(current_until) AS until "
        f"FROM {DB}.v_score_history GROUP BY run_id"
    ).collect()
    by_run = {r["run_id"]: r for r in history}
    assert set(by_run) == {first.run_id, rerun.run_id}  # no reproduction
    assert (by_run[first.run_id]["n"], by_run[first.run_id]["by"]) == (5, rerun.run_id)
    assert by_run[first.run_id]["cur"] is False and by_run[first.run_id]["until"] is not None
    assert (by_run[rerun.run_id]["n"], by_run[rerun.run_id]["cur"]) == (5, True)
    latest = spark.table(f"{DB}.v_latest_scores").select("run_id").distinct().collect()
    assert [r["run_id"] for r in latest] == [rerun.run_id]
    properties = {
        r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {DB}.scored_history").collect()
    }
    assert properties["delta.logRetentionDuration"] == "interval 2557 days"
    # Rows the retention purge deletes leave with VACUUM after 30 days, not 7 more years.
    assert properties["delta.deletedFileRetentionDuration"] == "interval 30 days"


def test_a_changed_library_version_rescores_every_row(spark, story, monkeypatch):
    conf, _, _, rerun, _, _ = story
    real = lineage.environment()
    monkeypatch.setattr(lineage, "environment", lambda: {**real, "torch": real["torch"] + "+new"})
    result = score_portfolio(spark, conf, as_of=D1, mode="incremental")
    # B, D and E read the same documents as the rerun; only the library version changed.
    assert result.carried_from_run_id == rerun.run_id
    assert (result.rows_scored, result.rows_carried_forward) == (6, 0)
    assert run_log(spark, result.run_id)["environment"]["torch"].endswith("+new")


def test_the_environment_is_part_of_the_fingerprint_key():
    conf = load_config(ROOT / "conf/local.yaml").scoring
    env = {"torch": "2.5.1", "transformers": "4.46.0"}
    assert score_conf_key(conf, None, env) == score_conf_key(conf, None, dict(env))
    assert score_conf_key(conf, None, env) != score_conf_key(conf, None, {**env, "torch": "2.6.0"})


def test_a_run_refuses_scores_at_two_precisions():
    assert lineage.check_one_precision(["fp32", "fp32"], ["fp32"], run_id="r") == "fp32"
    assert lineage.check_one_precision([], [], run_id="r") is None
    with pytest.raises(lineage.MixedPrecisionError, match=r"bf16.*fp16"):
        lineage.check_one_precision(["bf16", "fp16"], run_id="r")
    with pytest.raises(lineage.MixedPrecisionError, match=r"carried forward: \['fp32'\]"):
        lineage.check_one_precision(["bf16"], ["fp32"], run_id="r")


def test_environment_changes_name_each_changed_library():
    recorded = {"torch": "2.5.1", "transformers": "4.46.0", "python": "3.11.9"}
    now = {"torch": "2.6.0", "transformers": "4.46.0", "python": "3.11.9", "peft": "0.13"}
    assert environment_changes(recorded, now) == "peft absent -> 0.13, torch 2.5.1 -> 2.6.0"
    assert environment_changes(recorded, dict(recorded)) == ""
    assert environment_changes({}, now) == ""  # a run from before the record


@pytest.mark.parametrize("extra", [["--mode", "incremental"], ["--full"], ["--to", "2026-11-21"]])
def test_reproduce_refuses_options_that_do_not_apply(extra: list[str]):
    with pytest.raises(SystemExit) as exit_info:
        job("score_portfolio").main(["--reproduce", "r", *extra])
    assert exit_info.value.code == 2


def test_inputs_as_of_takes_iso_timestamps_utc_unless_offset():
    assert iso_timestamp("2026-11-20T23:00:00") == dt.datetime(2026, 11, 20, 23, tzinfo=dt.UTC)
    assert iso_timestamp("2026-11-21T01:00:00+02:00").astimezone(dt.UTC) == dt.datetime(
        2026, 11, 20, 23, tzinfo=dt.UTC
    )
    with pytest.raises(argparse.ArgumentTypeError, match="not an ISO 8601 timestamp"):
        iso_timestamp("yesterday")


def test_compare_scores_counts_differences(spark):
    cols = "obligor_id string, pd double, grade string, decision string"
    stored = spark.createDataFrame(
        [("A", 0.1, "B", "review"), ("B", 0.2, "B", "review"), ("C", 0.3, "CCC", "decline")], cols
    )
    again = spark.createDataFrame(
        [("A", 0.1 + 5e-7, "B", "review"), ("B", 0.2, "BB", "review"), ("D", 0.4, "CC", "decline")],
        cols,
    )
    compared, differing, missing, largest = compare_scores(stored, again, tolerance=1e-6)
    assert (compared, differing, missing) == (2, 1, 2)
    assert largest == pytest.approx(5e-7, abs=1e-12)


def test_a_knowledge_time_before_a_table_existed_is_refused(spark, story):
    with pytest.raises(InputError, match=f"table {DB}.portfolio has no version committed"):
        version_at(spark, f"{DB}.portfolio", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def library_run(spark) -> str:
    """The run of test_a_changed_library_version_rescores_every_row (it read the portfolio with
    F in it)."""
    row = (
        spark.table(f"{DB}.score_runs")
        .where(F.col("environment")["torch"].endswith("+new"))
        .select("run_id")
        .first()
    )
    assert row is not None
    return str(row["run_id"])


def test_monitoring_reads_attributes_as_each_run_read_them(spark, story):
    conf, first, _, _, _, _ = story
    later = library_run(spark)
    # After every run, B moves to corporate in the portfolio.
    spark.sql(f"UPDATE {DB}.portfolio SET segment = 'corporate' WHERE obligor_id = 'B'")
    portfolio, version = portfolio_of_run(spark, conf, first.run_id, D1)
    assert version == run_log(spark, first.run_id)["input_versions"][f"{DB}.portfolio"]
    assert portfolio.where(F.col("obligor_id") == "B").first()["segment"] == "retail"
    rows = spark.createDataFrame(
        [(run, D1, o) for run in (first.run_id, later) for o in "BF"],
        "run_id string, as_of_date date, obligor_id string",
    )
    joined = cohort_attributes(spark, conf, rows, ["segment"])
    segments = {(r["run_id"], r["obligor_id"]): r["segment"] for r in joined.collect()}
    # F joined after run 1 (not in its portfolio version) and before the later run; B was
    # retail for both, whatever the portfolio says today.
    assert segments == {
        (first.run_id, "B"): "retail",
        (first.run_id, "F"): None,
        (later, "B"): "retail",
        (later, "F"): "retail",
    }


def test_a_backtest_whose_cohort_version_is_gone_uses_current_attributes(spark, story):
    conf = story[0]
    overwrite_table(
        spark.createDataFrame(
            [(o, D1, int(o in "AC")) for o in "ABCDEF"],
            "obligor_id string, observation_date date, default_12m int",
        ),
        f"{DB}.outcomes",
    )
    notes: list[str] = []
    records, _ = backtest_cohorts(spark, conf, ["segment"], [D1], {}, notes)
    assert notes == [] and records
    # The current run of D1 recorded a portfolio version that no longer exists.
    spark.sql(
        f"UPDATE {DB}.score_runs SET input_versions = map('{DB}.portfolio', 999L) "
        f"WHERE run_id = '{library_run(spark)}'"
    )
    fallback, _ = backtest_cohorts(spark, conf, ["segment"], [D1], {}, notes)
    assert len(notes) == 1 and "no longer readable" in notes[0]
    # Pinned, B is retail as the run read it; the fallback has today's corporate B.
    assert {r.slice_value for r in records if r.slice_key == "segment"} == {"retail"}
    assert {r.slice_value for r in fallback if r.slice_key == "segment"} == {"retail", "corporate"}


def test_history_past_the_retention_is_dropped_whole_dates(spark, story):
    conf = story[0]
    history = spark.table(f"{DB}.scored_history")
    kept = history.count()
    assert kept > 0 and history.where(F.col("as_of_date") != D1).count() == 0
    # On the last day of the retention D1 stays; a day later its rows go.
    last_day = D1 + dt.timedelta(days=conf.tables.retention_days)
    assert purge_expired(spark, conf, today=last_day) == 0
    assert spark.table(f"{DB}.scored_history").count() == kept
    assert purge_expired(spark, conf, today=last_day + dt.timedelta(days=1)) == 1
    assert spark.table(f"{DB}.scored_history").count() == 0
    assert spark.table(f"{DB}.scored_portfolio").where(F.col("as_of_date") == D1).count() == 6
