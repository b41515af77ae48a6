"""Monitoring as its own phase, after a run's scores are published.

A run is published by its ``score_runs`` success row; monitoring comes after it and cannot undo
it. ``run_monitoring`` never raises: it returns the outcome (success, failed or skipped) and
records it in ``monitor_runs``, so that a failed monitoring is visible (``v_run_history``) and can
be run again for the published run (``monitor_published_run``, ``jobs/monitor.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import SparkSession

from riskudf.config import RiskConf
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import InputError, append, schema
from riskudf.lakehouse.schemas import MONITOR_RUNS_COLUMNS
from riskudf.model.aliases import locate
from riskudf.model.artifact import Manifest, read_manifest
from riskudf.monitoring.lifecycle import close_stale_alerts, current_run, successful_run
from riskudf.monitoring.run import MonitorSummary, ensure_log_tables, monitor_run
from riskudf.safe_logging import safe_message

log = logging.getLogger(__name__)

Status = Literal["success", "failed", "skipped"]


@dataclass(frozen=True)
class MonitoringOutcome:
    status: Status
    summary: MonitorSummary | None  # set on success
    error: str | None = None  # the exception's class name; never its message


def _record(
    spark: SparkSession,
    conf: RiskConf,
    *,
    run_id: str,
    as_of: dt.date,
    started: dt.datetime,
    outcome: MonitoringOutcome,
) -> None:
    summary = outcome.summary
    row = (
        run_id,
        as_of,
        outcome.status,
        started,
        dt.datetime.now(dt.UTC),
        outcome.error,
        summary.alerts_fired if summary else None,
        len(summary.alerts) - summary.alerts_fired if summary else None,
        summary.input_versions if summary else None,
    )
    frame = spark.createDataFrame([row], schema(MONITOR_RUNS_COLUMNS))
    append(frame, conf.tables.qualified("monitor_runs"))


def run_monitoring(
    spark: SparkSession,
    conf: RiskConf,
    *,
    run_id: str,
    as_of: dt.date,
    manifest: Manifest,
    model_dir: str | Path,
) -> MonitoringOutcome:
    """Monitor a published run, close the date's alerts of runs that are not current, and
    record the outcome in ``monitor_runs``. Never raises (an error is logged and recorded by
    class name); ``skipped`` when conf disables monitoring."""
    started = dt.datetime.now(dt.UTC)
    outcome = MonitoringOutcome("skipped", None)
    try:
        ensure_log_tables(spark, conf)
        if conf.monitoring.enabled:
            summary = monitor_run(
                spark, conf, run_id=run_id, as_of=as_of, manifest=manifest, model_dir=model_dir
            )
            close_stale_alerts(spark, conf, as_of=as_of)
            outcome = MonitoringOutcome("success", summary)
    except Exception as exc:
        log.error(
            "run %s: monitoring failed, the scores stay published (%s); run it again with "
            "`make monitor RUN_ID=%s`",
            run_id,
            safe_message(exc),
            run_id,
        )
        outcome = MonitoringOutcome("failed", None, type(exc).__name__)
    try:
        _record(spark, conf, run_id=run_id, as_of=as_of, started=started, outcome=outcome)
    except Exception as exc:
        log.error("run %s: could not record its monitoring (%s)", run_id, type(exc).__name__)
    return outcome


def monitor_published_run(spark: SparkSession, conf: RiskConf, *, run_id: str) -> MonitoringOutcome:
    """Monitor again the current successful run ``run_id`` (its scores are the date's rows),
    holding its date so that no rerun replaces them meanwhile. The model of conf must be the
    one the run was scored with."""
    row = successful_run(spark, conf, run_id)
    as_of = row["as_of_date"]
    current = current_run(spark, conf, as_of)
    if current != run_id:
        raise InputError(f"run {run_id} is not the current run of {as_of}: run {current} is")
    model_dir = locate(
        spark,
        conf.scoring.model,
        aliases_table=conf.tables.qualified("model_aliases"),
        registry_table=conf.tables.qualified("model_registry"),
        version=row["model_version"],
    ).path
    manifest = read_manifest(model_dir)
    if manifest.model_version != row["model_version"]:
        raise InputError(
            f"run {run_id} was scored with model {row['model_version']}, which the registry "
            f"does not know; {model_dir} holds {manifest.model_version}"
        )
    locks, holder = conf.tables.qualified("scoring_locks"), f"{run_id}:monitor"
    lease = conf.scoring.lock_lease_minutes
    leases.acquire(spark, locks, as_of=as_of, run_id=holder, lease_minutes=lease)
    try:
        return run_monitoring(
            spark, conf, run_id=run_id, as_of=as_of, manifest=manifest, model_dir=model_dir
        )
    finally:
        leases.release(spark, locks, as_of=as_of, run_id=holder)
