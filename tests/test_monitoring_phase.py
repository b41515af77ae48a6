"""Monitoring after publication (issue 16): a failed monitoring leaves the run published and can
be run again; runs of different dates are monitored at the same time; alerts of superseded and
failed runs are closed, and analysts acknowledge or close alerts with a record of who and when.

One small demo lakehouse, scored three times by the fixture (D1 twice, D2 once by the real job
with a report directory that cannot be created); the tests check what that left.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import functions as F

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.bi.views import publish_bi_objects
from riskudf.config import load_config
from riskudf.lakehouse.delta import ddl, schema
from riskudf.lakehouse.schemas import MONITOR_ALERTS_COLUMNS, MONITOR_TABLES, SCORE_RUNS_COLUMNS
from riskudf.model.artifact import read_manifest
from riskudf.monitoring.run import ensure_monitor_tables, monitor_run
from riskudf.scoring.pipeline import score_portfolio

ROOT = Path(__file__).resolve().parents[1]
DB = "mon_phase"
D1, D2 = dt.date(2026, 10, 31), dt.date(2026, 11, 28)
# psi above 0 raises an alert on every BASELINE drift record: each run has alerts.
ALERTING = {"psi": {"warn": 0.0, "alert": 0.0}}


def write_conf(path: Path, model_dir: Path, **overrides: Any) -> Path:
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    data["scoring"]["model"] = str(model_dir)
    data["monitoring"]["report_dir"] = str(path.parent / "reports")
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path.write_text(yaml.safe_dump(data))
    return path


def job(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"jobs_{name}", ROOT / "jobs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(spark, sql: str) -> list[tuple]:
    return sorted(tuple(row) for row in spark.sql(sql).collect())


@pytest.fixture(scope="module")
def lake(spark, tiny_model, tmp_path_factory) -> dict[str, Any]:
    """D1 scored by run a and rerun by run b (after a failed run f of D1 with an open alert, as
    older releases left them); D2 scored by run c, then by the job with its report directory
    blocked by a file."""
    base = tmp_path_factory.mktemp("mon_phase")
    write_demo_tables(
        spark, database=DB, n_obligors=40, spec=DemoSpec(seed=5), filing_lookback_days=730
    )
    reports = str(base / "reports")
    good = write_conf(base / "good.yaml", tiny_model, monitoring__report_dir=reports)
    (base / "blocker").write_text("a file where the report directory should be\n")
    blocked = write_conf(
        base / "blocked.yaml",
        tiny_model,
        monitoring__report_dir=str(base / "blocker" / "reports"),
        monitoring__alerts=ALERTING,
    )
    conf = load_config(
        write_conf(
            base / "alerting.yaml",
            tiny_model,
            monitoring__report_dir=reports,
            monitoring__alerts=ALERTING,
        )
    )
    a = score_portfolio(spark, conf, as_of=D1)
    publish_bi_objects(spark, conf)
    open_after_a = rows(spark, f"SELECT alert_id FROM {DB}.v_alerts_open")
    stamp = dt.datetime(2026, 11, 29, 1, 0, 0)
    failed_run = ("f", D1, stamp, stamp, "failed", 40, 0, 0, 0, "tiny-1", {}, 1.0, "E")
    spark.createDataFrame(
        [(*failed_run, None, "full", 0, None, None, None, None, None, None, None)],
        schema(SCORE_RUNS_COLUMNS),
    ).writeTo(f"{DB}.score_runs").append()
    alert = ("f-alert", "f", D1, "psi_pd_baseline", "alert", "psi", None, None, 0.5, 0.25)
    spark.createDataFrame([(*alert, stamp, "open", None)], schema(MONITOR_ALERTS_COLUMNS)).writeTo(
        f"{DB}.monitor_alerts"
    ).append()
    b = score_portfolio(spark, conf, as_of=D1)
    score_portfolio(spark, conf, as_of=D2)
    code = job("score_portfolio").main(["--as-of", D2.isoformat(), "--conf", str(blocked)])
    publish_bi_objects(spark, conf)
    d2 = (
        spark.table(f"{DB}.score_runs")
        .where(F.col("as_of_date") == D2)
        .orderBy(F.desc("finished_at"))
        .select("run_id", "status", "alerts_fired")
        .first()
    )
    return {
        "a": a,
        "b": b,
        "open_after_a": open_after_a,
        "d2_code": code,
        "d2": d2,
        "good": good,
        "conf": conf,
    }


def alert_ids(spark, run_id: str) -> list[str]:
    return sorted(
        r["alert_id"]
        for r in spark.table(f"{DB}.monitor_alerts").where(F.col("run_id") == run_id).collect()
    )


def test_a_failed_monitoring_keeps_the_run_published_and_the_job_says_so(spark, lake) -> None:
    d2 = lake["d2"]
    assert lake["d2_code"] == 4  # scores published, monitoring failed
    assert (d2["status"], d2["alerts_fired"]) == ("success", None)
    scored = spark.table(f"{DB}.scored_portfolio").where(F.col("as_of_date") == D2)
    assert [r["run_id"] for r in scored.select("run_id").distinct().collect()] == [d2["run_id"]]
    assert rows(
        spark,
        f"SELECT as_of_date, status, error, alerts_fired FROM {DB}.monitor_runs "
        f"WHERE run_id = '{d2['run_id']}'",
    ) == [(D2, "failed", "NotADirectoryError", None)]
    assert rows(
        spark,
        f"SELECT status, monitoring_status FROM {DB}.v_run_history WHERE run_id = '{d2['run_id']}'",
    ) == [("success", "failed")]


def test_the_monitor_job_reruns_monitoring_of_a_published_run_only(spark, lake) -> None:
    monitor, good, d2 = job("monitor"), str(lake["good"]), lake["d2"]["run_id"]
    # Not a published run, or no longer the current run of its date: refused, nothing written.
    assert monitor.main(["--run-id", "f", "--conf", good]) == 2
    assert monitor.main(["--run-id", "nope", "--conf", good]) == 2
    assert monitor.main(["--run-id", lake["a"].run_id, "--conf", good]) == 2
    assert monitor.main(["--run-id", d2, "--conf", good]) == 0
    got = rows(
        spark,
        f"SELECT status, error FROM {DB}.monitor_runs WHERE run_id = '{d2}'",
    )
    assert got == [("failed", "NotADirectoryError"), ("success", None)]
    history = spark.sql(
        f"SELECT monitoring_status, alerts_fired FROM {DB}.v_run_history WHERE run_id = '{d2}'"
    ).first()
    alerts = spark.table(f"{DB}.monitor_alerts").where(F.col("run_id") == d2)
    assert history["monitoring_status"] == "success"
    assert history["alerts_fired"] == alerts.where(F.col("severity") == "alert").count()
    # The run log keeps its publication-time columns; alerts_fired is no longer filled there.
    assert rows(spark, f"SELECT alerts_fired FROM {DB}.score_runs WHERE run_id = '{d2}'") == [
        (None,)
    ]


def test_a_rerun_closes_the_alerts_of_superseded_and_failed_runs(spark, lake) -> None:
    a, b = lake["a"].run_id, lake["b"].run_id
    assert lake["open_after_a"] == [(i,) for i in alert_ids(spark, a)] != []
    b_alerts = alert_ids(spark, b)
    assert b_alerts != []
    open_d1 = rows(spark, f"SELECT alert_id FROM {DB}.v_alerts_open WHERE as_of_date = DATE'{D1}'")
    assert open_d1 == [(i,) for i in b_alerts]
    assert lake["b"].monitoring_status == "success"
    closures = rows(
        spark,
        f"SELECT alert_id, run_id, action, acted_by, note FROM {DB}.alert_actions "
        f"WHERE as_of_date = DATE'{D1}'",
    )
    assert closures == sorted(
        [(i, a, "close", "riskudf", f"superseded by run {b}") for i in alert_ids(spark, a)]
        + [("f-alert", "f", "close", "riskudf", "run did not succeed (score_runs status failed)")]
    )


def test_an_analyst_acknowledges_or_closes_an_alert_with_a_record(spark, lake) -> None:
    alerts, conf = job("alerts"), str(lake["good"])
    first, second = alert_ids(spark, lake["b"].run_id)[:2]
    before = spark.sql("SELECT unix_micros(current_timestamp()) AS t").first()["t"]
    assert alerts.main(["ack", "--alert-id", first, "--by", "jdoe", "--conf", conf]) == 0
    assert (
        alerts.main(
            ["close", "--alert-id", second, "--by", "asmith", "--note", "known", "--conf", conf]
        )
        == 0
    )
    after = spark.sql("SELECT unix_micros(current_timestamp()) AS t").first()["t"]
    open_ids = {r[0] for r in rows(spark, f"SELECT alert_id FROM {DB}.v_alerts_open")}
    assert first not in open_ids and second not in open_ids
    recorded = rows(
        spark,
        f"SELECT alert_id, action, acted_by, note, unix_micros(acted_at) FROM {DB}.alert_actions "
        f"WHERE alert_id IN ('{first}', '{second}')",
    )
    assert [r[:4] for r in recorded] == sorted(
        [(first, "ack", "jdoe", None), (second, "close", "asmith", "known")]
    )
    assert all(before <= r[4] <= after for r in recorded)
    # A closed alert takes no more actions; an unknown alert is refused.
    assert alerts.main(["ack", "--alert-id", second, "--by", "jdoe", "--conf", conf]) == 2
    assert alerts.main(["ack", "--alert-id", "nope", "--by", "jdoe", "--conf", conf]) == 2


def test_two_dates_are_monitored_at_the_same_time(spark, lake, tiny_model) -> None:
    conf = lake["conf"]
    current = spark.sql(
        f"SELECT as_of_date, max_by(run_id, finished_at) AS run_id FROM {DB}.score_runs "
        "WHERE status = 'success' GROUP BY as_of_date"
    ).collect()
    runs = {r["as_of_date"]: r["run_id"] for r in current}
    assert set(runs) == {D1, D2}
    manifest = read_manifest(tiny_model)
    start = threading.Barrier(len(runs))
    done: dict[dt.date, Any] = {}

    def monitor(day: dt.date) -> None:
        start.wait()
        try:
            done[day] = monitor_run(
                spark, conf, run_id=runs[day], as_of=day, manifest=manifest, model_dir=tiny_model
            )
        except Exception as exc:
            done[day] = exc

    threads = [threading.Thread(target=monitor, args=(day,)) for day in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {day: type(result).__name__ for day, result in done.items()} == {
        D1: "MonitorSummary",
        D2: "MonitorSummary",
    }
    for day, run_id in runs.items():
        for name in MONITOR_TABLES:
            table = spark.table(f"{DB}.{name}").where(F.col("run_id") == run_id)
            assert table.count() == done[day].rows_written[name], (day, name)
            assert [r[0] for r in table.select("as_of_date").distinct().collect()] in (
                [day],
                [],
            )
    for name in MONITOR_TABLES:
        detail = spark.sql(f"DESCRIBE DETAIL {DB}.{name}").first()
        assert list(detail["partitionColumns"]) == ["as_of_date"], name


def test_an_unpartitioned_monitor_table_of_an_older_release_is_migrated(
    spark, tiny_model, tmp_path
) -> None:
    database = "mon_old"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    spark.sql(
        f"CREATE TABLE {database}.monitor_alerts ({ddl(MONITOR_ALERTS_COLUMNS)}) USING DELTA "
        "COMMENT 'old'"
    )
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5)
    old = [
        ("x1", "r1", D1, "psi_pd_baseline", "alert", "psi", None, None, 0.3, 0.25, stamp, "open")
    ]
    spark.createDataFrame([(*row, None) for row in old], schema(MONITOR_ALERTS_COLUMNS)).writeTo(
        f"{database}.monitor_alerts"
    ).append()
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = database
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    ensure_monitor_tables(spark, load_config(path))
    detail = spark.sql(f"DESCRIBE DETAIL {database}.monitor_alerts").first()
    assert list(detail["partitionColumns"]) == ["as_of_date"]
    assert detail["description"] == "old"
    got = rows(spark, f"SELECT * FROM {database}.monitor_alerts")
    assert got == [(*old[0], None)]
    comments = [f.metadata.get("comment") for f in spark.table(f"{database}.monitor_alerts").schema]
    assert comments == [comment for _, _, _, comment in MONITOR_ALERTS_COLUMNS]
