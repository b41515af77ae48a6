"""Monitoring of a published scoring run, again (when it failed after publication, or to redo it).

spark-submit jobs/monitor.py --run-id RUN_ID [--conf conf/local.yaml]

The run must be the current successful run of its date, scored with the model of conf.
Exit codes: 0 monitored, 1 monitoring failed, 2 bad input (not such a run), 3 alerts with
monitoring.fail_on_alert.
"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import load_config
from riskudf.entry import EXIT_ALERTS, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from riskudf.lakehouse.session import build_spark
from riskudf.monitoring.phase import monitor_published_run
from riskudf.safe_logging import BAD_INPUT, safe_message, setup_logging

log = logging.getLogger("monitor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-id", required=True, help="run_id of score_runs")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        conf = load_config(args.conf)
        outcome = monitor_published_run(build_spark(conf.spark), conf, run_id=args.run_id)
    except BAD_INPUT as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("monitoring of run %s failed: %s", args.run_id, safe_message(exc))
        return EXIT_FAILED
    summary = outcome.summary
    print(f"run {args.run_id}: monitoring {outcome.status}")
    if summary is None:
        return EXIT_FAILED if outcome.status == "failed" else EXIT_OK
    warnings = len(summary.alerts) - summary.alerts_fired
    print(f"{summary.alerts_fired} alerts, {warnings} warnings; report {summary.report_path}")
    return EXIT_ALERTS if summary.fails_run else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
