"""Nightly portfolio scoring.

spark-submit jobs/score_portfolio.py --as-of YYYY-MM-DD [--mode full|incremental] [--full]
spark-submit jobs/score_portfolio.py --from YYYY-MM-DD --to YYYY-MM-DD (a backfill, one app)
    [--inputs-as-of TIMESTAMP]: read every input as known then (Delta time travel)
spark-submit jobs/score_portfolio.py --reproduce RUN_ID [--inputs-as-of TIMESTAMP]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from pyspark.sql import SparkSession

from riskudf import failpoints
from riskudf.bi.views import after_nightly_write
from riskudf.config import RiskConf
from riskudf.entry import (
    EXIT_ALERTS,
    EXIT_MONITORING_FAILED,
    EXIT_NOT_REPRODUCED,
    EXIT_OK,
    add_conf_argument,
    grade_lines,
    iso_date,
    iso_timestamp,
    run_job,
    table_location,
)
from riskudf.lakehouse.session import build_spark
from riskudf.safe_logging import safe_message
from riskudf.scoring.pipeline import Mode, RunResult, backfill, business_date, purge_expired
from riskudf.scoring.reproduce import report_lines, reproduce

log = logging.getLogger("score_portfolio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    dates = parser.add_mutually_exclusive_group(required=True)
    dates.add_argument("--as-of", type=iso_date, help="as-of date, YYYY-MM-DD")
    dates.add_argument("--from", dest="start", type=iso_date, help="backfill: first as-of date")
    dates.add_argument(
        "--reproduce",
        metavar="RUN_ID",
        help="score that run's date again from its recorded input and model versions and "
        "compare with its stored rows (writes only a run log row)",
    )
    parser.add_argument("--to", dest="end", type=iso_date, help="backfill: last as-of date")
    parser.add_argument(
        "--mode",
        choices=("full", "incremental"),
        default="full",
        help="incremental: rescore only obligors whose document changed since the last run",
    )
    parser.add_argument("--full", action="store_true", help="force a full rescore (any --mode)")
    parser.add_argument(
        "--inputs-as-of",
        type=iso_timestamp,
        help="knowledge time: read each input at its last version committed at this time "
        "(ISO 8601; UTC unless it has an offset); default: the run's start",
    )
    add_conf_argument(parser)
    args = parser.parse_args(argv)
    if args.reproduce and (args.end is not None or args.full or args.mode != "full"):
        parser.error("--reproduce scores the run's own date in full: no --to, --mode or --full")
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    start, end = (args.as_of, args.as_of) if args.as_of else (args.start, args.end)
    mode: Mode = "full" if args.full else args.mode

    def score(conf: RiskConf) -> int:
        failpoint = failpoints.from_env()
        spark = build_spark(conf.spark, conf.scoring.gpu)
        if args.reproduce:
            return reproduce_run(spark, conf, args.reproduce, args.inputs_as_of)
        results = backfill(
            spark,
            conf,
            start=start,
            end=end,
            mode=mode,
            failpoint=failpoint,
            inputs_as_of=args.inputs_as_of,
        )
        code = max((after_run(spark, conf, result) for result in results), default=EXIT_OK)
        expire_history(spark, conf)
        return code

    return run_job(args.conf, score, log=log, failure="scoring run failed")


def reproduce_run(
    spark: SparkSession, conf: RiskConf, run_id: str, inputs_as_of: dt.datetime | None
) -> int:
    """--reproduce: the report on stdout; exit 0 when every row was reproduced."""
    result, found = reproduce(spark, conf, run_id=run_id, inputs_as_of=inputs_as_of)
    print("\n".join(report_lines(found)))
    print(f"run log: {conf.tables.qualified('score_runs')} run_id {result.run_id}")
    return EXIT_OK if found.identical else EXIT_NOT_REPRODUCED


def expire_history(spark: SparkSession, conf: RiskConf) -> None:
    """Drop scored_history dates past the retention; a failure is logged, never fatal."""
    try:
        purge_expired(
            spark, conf, today=business_date(dt.datetime.now(dt.UTC), conf.scoring.timezone)
        )
    except Exception as exc:
        log.error("could not drop expired history: %s", safe_message(exc))


def after_run(spark: SparkSession, conf: RiskConf, result: RunResult) -> int:
    """Compaction and BI refresh for the run's date, then its summary; the exit code."""
    try:
        # Compaction, Z-order and the BI views: the scores are written and logged already, so
        # a failure here leaves slower lookups, not wrong data; it is logged, not fatal.
        after_nightly_write(spark, conf, as_of=result.as_of)
    except Exception as exc:
        log.error(
            "run %s: compaction or BI refresh failed (scores are written): %s",
            result.run_id,
            safe_message(exc),
        )
    scored = conf.tables.qualified("scored_portfolio")
    runs = conf.tables.qualified("score_runs")
    print(
        f"run {result.run_id}: scored {result.rows_scored} of {result.rows_in} obligors "
        f"as of {result.as_of} with model {result.model_version} in {result.duration_s:.0f}s"
    )
    if result.carried_from_run_id:
        print(
            f"mode {result.mode}: {result.rows_scored - result.rows_carried_forward} rescored, "
            f"{result.rows_carried_forward} carried forward from run {result.carried_from_run_id}"
        )
    else:
        print(f"mode {result.mode}: {result.rows_scored} rescored, none carried forward")
    print(
        f"quarantined: {result.rows_quarantined} obligors, {result.records_quarantined} "
        f"input records (see {conf.tables.qualified('scoring_quarantine')})"
    )
    for reason, count in sorted(result.reason_counts.items()):
        print(f"  {reason:<40} {count:>8}")
    print("count per grade:")
    print("\n".join(grade_lines(result.grade_counts, conf)))
    print(f"tables: {scored} at {table_location(spark, scored)}")
    print(f"        {runs} at {table_location(spark, runs)}")
    print(
        f'query:  source .venv/bin/activate && spark-sql -e "SELECT grade, decision, count(*) '
        f"FROM {scored} WHERE as_of_date = '{result.as_of}' GROUP BY grade, decision\""
    )
    if result.monitoring_status == "failed":
        log.error(
            "run %s: scores published, but their monitoring failed (see monitor_runs); rerun it "
            "with `make monitor RUN_ID=%s`",
            result.run_id,
            result.run_id,
        )
        return EXIT_MONITORING_FAILED
    monitoring = result.monitoring
    if monitoring is not None:
        warnings = len(monitoring.alerts) - monitoring.alerts_fired
        print(
            f"monitoring: {monitoring.alerts_fired} alerts, {warnings} warnings "
            f"in {monitoring.duration_s:.0f}s; report {monitoring.report_path}"
        )
        print(f"        {conf.tables.database}.monitor_* tables; alerts in monitor_alerts")
        if monitoring.fails_run:
            log.error("monitoring raised alerts and monitoring.fail_on_alert is set")
            return EXIT_ALERTS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
