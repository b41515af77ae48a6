"""The lifecycle of monitoring alerts: acknowledgements and closures, in ``alert_actions``.

``monitor_alerts`` keeps each alert as raised (status ``open``); what happened to it since is an
append-only log of actions, each naming who and when. Analysts acknowledge or close an alert
(``jobs/alerts.py``); monitoring closes, as ``riskudf``, the open alerts of every run of a date
that is not the date's current run (a failed run, or a successful one superseded by a rerun).
The current run of a date is its latest successful run in ``score_runs``. ``v_alerts_open``
shows the alerts of current runs that have no action.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.lakehouse.delta import InputError, MissingTableError, append, quote_name, schema
from riskudf.lakehouse.schemas import ALERT_ACTIONS_COLUMNS

log = logging.getLogger(__name__)

Action = Literal["ack", "close"]
ACTIONS: tuple[Action, ...] = ("ack", "close")
SYSTEM = "riskudf"  # acted_by of automatic closures


@dataclass(frozen=True)
class AlertAction:
    alert_id: str
    run_id: str
    as_of_date: dt.date
    action: Action
    acted_by: str
    acted_at: dt.datetime
    note: str | None


def current_runs_sql(runs_table: str) -> str:
    """as_of_date, run_id of each date's current run: its latest successful run (ties, which
    only hand-made rows have, go to the larger run_id)."""
    return (
        "SELECT as_of_date, run_id FROM (SELECT as_of_date, run_id, row_number() OVER "
        "(PARTITION BY as_of_date ORDER BY finished_at DESC, run_id DESC) AS rank_current "
        f"FROM {quote_name(runs_table)} WHERE status = 'success') ranked WHERE rank_current = 1"
    )


def successful_run(spark: SparkSession, conf: RiskConf, run_id: str) -> Row:
    """The run log row of ``run_id``, a successful scoring run (else InputError)."""
    runs = conf.tables.qualified("score_runs")
    if not spark.catalog.tableExists(runs):
        raise MissingTableError(f"table {runs} does not exist")
    row = spark.table(runs).where(F.col("run_id") == run_id).orderBy(F.desc("finished_at")).first()
    if row is None or row["status"] != "success":
        status = row["status"] if row is not None else "not in score_runs"
        raise InputError(f"run {run_id} is not a successful scoring run ({status})")
    return row


def current_run(spark: SparkSession, conf: RiskConf, as_of: dt.date) -> str | None:
    runs = spark.sql(current_runs_sql(conf.tables.qualified("score_runs")))
    row = runs.where(F.col("as_of_date") == F.lit(as_of)).first()
    return None if row is None else str(row["run_id"])


def _append(spark: SparkSession, conf: RiskConf, actions: list[AlertAction]) -> None:
    rows = [
        (a.alert_id, a.run_id, a.as_of_date, a.action, a.acted_by, a.acted_at, a.note)
        for a in actions
    ]
    frame = spark.createDataFrame(rows, schema(ALERT_ACTIONS_COLUMNS))
    append(frame, conf.tables.qualified("alert_actions"))  # a blind append: never conflicts


def close_stale_alerts(spark: SparkSession, conf: RiskConf, *, as_of: dt.date) -> list[AlertAction]:
    """Close the open alerts of the date's runs other than its current run, with the reason.

    Alerts with any action already are left alone; returns the closures recorded.
    """
    tables = conf.tables
    current = current_run(spark, conf, as_of)
    status = (
        spark.table(tables.qualified("score_runs"))
        .groupBy("run_id")
        .agg(F.max_by("status", "finished_at").alias("run_status"))
    )
    stale = (
        spark.table(tables.qualified("monitor_alerts"))
        .where(
            (F.col("as_of_date") == F.lit(as_of))
            & (F.col("status") == "open")
            & (F.col("run_id") != F.lit(current or ""))
        )
        .join(spark.table(tables.qualified("alert_actions")), "alert_id", "left_anti")
        .join(status, "run_id", "left")
        .select("alert_id", "run_id", "run_status")
        .collect()
    )
    at = dt.datetime.now(dt.UTC)

    def reason(run_status: str | None) -> str:
        if run_status == "success" and current is not None:
            return f"superseded by run {current}"
        return f"run did not succeed (score_runs status {run_status or 'missing'})"

    closed = [
        AlertAction(r["alert_id"], r["run_id"], as_of, "close", SYSTEM, at, reason(r["run_status"]))
        for r in stale
    ]
    if closed:
        _append(spark, conf, closed)
        log.info("as of %s: closed %d alerts of runs that are not current", as_of, len(closed))
    return closed


def record_alert_action(
    spark: SparkSession,
    conf: RiskConf,
    *,
    alert_id: str,
    action: Action,
    by: str,
    note: str | None = None,
) -> AlertAction:
    """Record that ``by`` acknowledged or closed an alert, now. A closed alert takes no more."""
    if action not in ACTIONS:
        raise InputError(f"action must be one of {list(ACTIONS)}, got {action!r}")
    if not by.strip():
        raise InputError("an alert action needs who did it (--by)")
    tables = conf.tables
    alerts_table, actions_table = (
        tables.qualified("monitor_alerts"),
        tables.qualified("alert_actions"),
    )
    for table in (alerts_table, actions_table):
        if not spark.catalog.tableExists(table):
            raise MissingTableError(f"table {table} does not exist (no run monitored yet)")
    alert = spark.table(alerts_table).where(F.col("alert_id") == alert_id).first()
    if alert is None:
        raise InputError(f"no alert {alert_id} in {alerts_table}")
    closed = (
        spark.table(actions_table)
        .where((F.col("alert_id") == alert_id) & (F.col("action") == "close"))
        .select("acted_by", F.date_format("acted_at", "yyyy-MM-dd HH:mm:ss").alias("at"))
        .first()
    )
    if closed is not None:
        raise InputError(f"alert {alert_id} was closed by {closed['acted_by']} at {closed['at']}")
    done = AlertAction(
        alert_id,
        alert["run_id"],
        alert["as_of_date"],
        action,
        by.strip(),
        dt.datetime.now(dt.UTC),
        note or None,
    )
    _append(spark, conf, [done])
    return done
