"""Monitoring of a published scoring run, again (when it failed after publication, or to redo it).

spark-submit jobs/monitor.py --run-id RUN_ID [--conf conf/local.yaml]

The run must be the current successful run of its date, scored with the model of conf.
Exit codes: 0 monitored, 1 monitoring failed, 2 bad input (no such run), 3 alerts with
monitoring.fail_on_alert.
"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import EXIT_ALERTS, EXIT_FAILED, EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.monitoring.phase import MonitoringOutcome, monitor_published_run

log = logging.getLogger("monitor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-id", required=True, help="run_id of score_runs")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def monitor(conf: RiskConf) -> int:
        outcome = monitor_published_run(build_spark(conf.spark), conf, run_id=args.run_id)
        return report(args.run_id, outcome)

    return run_job(args.conf, monitor, log=log, failure=f"monitoring of run {args.run_id} failed")


def report(run_id: str, outcome: MonitoringOutcome) -> int:
    """Print the outcome of the run's monitoring; the exit code."""
    summary = outcome.summary
    print(f"run {run_id}: monitoring {outcome.status}")
    if summary is None:
        return EXIT_FAILED if outcome.status == "failed" else EXIT_OK
    warnings = len(summary.alerts) - summary.alerts_fired
    print(f"{summary.alerts_fired} alerts, {warnings} warnings; report {summary.report_path}")
    return EXIT_ALERTS if summary.fails_run else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
