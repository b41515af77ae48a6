"""Acknowledge or close a monitoring alert; the record names who and when (alert_actions).

spark-submit jobs/alerts.py ack|close --alert-id ID --by NAME [--note TEXT] [--conf ...]

Either action takes the alert out of v_alerts_open. Exit codes: 0 recorded, 1 failed, 2 bad
input (unknown alert, already closed, no --by).
"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import load_config
from riskudf.entry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from riskudf.lakehouse.session import build_spark
from riskudf.monitoring.lifecycle import ACTIONS, record_alert_action
from riskudf.safe_logging import BAD_INPUT, safe_message, setup_logging

log = logging.getLogger("alerts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=ACTIONS, help="ack: seen and handled; close: done")
    parser.add_argument("--alert-id", required=True, help="alert_id of monitor_alerts")
    parser.add_argument("--by", required=True, help="who acts (name or user id)")
    parser.add_argument("--note", help="why (free text)")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        conf = load_config(args.conf)
        done = record_alert_action(
            build_spark(conf.spark),
            conf,
            alert_id=args.alert_id,
            action=args.action,
            by=args.by,
            note=args.note,
        )
    except BAD_INPUT as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("alert action failed: %s", safe_message(exc))
        return EXIT_FAILED
    print(
        f"alert {done.alert_id} ({done.as_of_date}, run {done.run_id}): {done.action} by "
        f"{done.acted_by} at {done.acted_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
