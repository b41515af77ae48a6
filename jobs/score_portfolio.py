"""Nightly portfolio scoring: spark-submit jobs/score_portfolio.py --as-of YYYY-MM-DD."""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf import failpoints
from riskudf.bi import after_nightly_write
from riskudf.cli import (
    BAD_INPUT,
    EXIT_ALERTS,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    grade_lines,
    iso_date,
    safe_message,
    setup_logging,
    table_location,
)
from riskudf.config import load_config
from riskudf.scoring import score_portfolio
from riskudf.spark import build_spark

log = logging.getLogger("score_portfolio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--as-of", type=iso_date, required=True, help="as-of date, YYYY-MM-DD")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        conf = load_config(args.conf)
        failpoint = failpoints.from_env()
        spark = build_spark(conf.spark, conf.scoring.gpu)
        result = score_portfolio(spark, conf, as_of=args.as_of, failpoint=failpoint)
    except BAD_INPUT as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("scoring run failed: %s", safe_message(exc))
        return EXIT_FAILED
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
