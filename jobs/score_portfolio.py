"""Nightly portfolio scoring.

spark-submit jobs/score_portfolio.py --as-of YYYY-MM-DD [--mode full|incremental] [--full]
spark-submit jobs/score_portfolio.py --from YYYY-MM-DD --to YYYY-MM-DD (a backfill, one app)
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyspark.sql import SparkSession

from riskudf import failpoints
from riskudf.bi.views import after_nightly_write
from riskudf.config import RiskConf
from riskudf.entry import (
    EXIT_ALERTS,
    EXIT_MONITORING_FAILED,
    EXIT_OK,
    add_conf_argument,
    grade_lines,
    iso_date,
    run_job,
    table_location,
)
from riskudf.lakehouse.session import build_spark
from riskudf.safe_logging import safe_message
from riskudf.scoring.pipeline import Mode, RunResult, backfill

log = logging.getLogger("score_portfolio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    dates = parser.add_mutually_exclusive_group(required=True)
    dates.add_argument("--as-of", type=iso_date, help="as-of date, YYYY-MM-DD")
    dates.add_argument("--from", dest="start", type=iso_date, help="backfill: first as-of date")
    parser.add_argument("--to", dest="end", type=iso_date, help="backfill: last as-of date")
    parser.add_argument(
        "--mode",
        choices=("full", "incremental"),
        default="full",
        help="incremental: rescore only obligors whose document changed since the last run",
    )
    parser.add_argument("--full", action="store_true", help="force a full rescore (any --mode)")
    add_conf_argument(parser)
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    start, end = (args.as_of, args.as_of) if args.as_of else (args.start, args.end)
    mode: Mode = "full" if args.full else args.mode

    def score(conf: RiskConf) -> int:
        failpoint = failpoints.from_env()
        spark = build_spark(conf.spark, conf.scoring.gpu)
        results = backfill(spark, conf, start=start, end=end, mode=mode, failpoint=failpoint)
        return max((after_run(spark, conf, result) for result in results), default=EXIT_OK)

    return run_job(args.conf, score, log=log, failure="scoring run failed")


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
