"""Acknowledge or close a monitoring alert; the record names who and when (alert_actions).

spark-submit jobs/alerts.py ack|close --alert-id ID --by NAME [--note TEXT] [--conf ...]

Either action takes the alert out of v_alerts_open. Exit codes: 0 recorded, 1 failed, 2 bad
input (unknown alert, already closed, no --by).
"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.monitoring.lifecycle import ACTIONS, record_alert_action

log = logging.getLogger("alerts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=ACTIONS, help="ack: seen and handled; close: done")
    parser.add_argument("--alert-id", required=True, help="alert_id of monitor_alerts")
    parser.add_argument("--by", required=True, help="who acts (name or user id)")
    parser.add_argument("--note", help="why (free text)")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def act(conf: RiskConf) -> int:
        done = record_alert_action(
            build_spark(conf.spark),
            conf,
            alert_id=args.alert_id,
            action=args.action,
            by=args.by,
            note=args.note,
        )
        print(
            f"alert {done.alert_id} ({done.as_of_date}, run {done.run_id}): {done.action} by "
            f"{done.acted_by} at {done.acted_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        return EXIT_OK

    return run_job(args.conf, act, log=log, failure="alert action failed")


if __name__ == "__main__":
    sys.exit(main())
