"""Serve the BI views over JDBC: spark-submit jobs/serve_bi.py (what `make bi` runs).

Publishes the documented tables and analyst views, starts the Spark Thrift Server (HiveServer2
protocol) in this JVM on the configured loopback port, prints one ready line with the JDBC URL,
and serves until SIGINT or SIGTERM (Ctrl-C, or `make bi-stop`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from riskudf.bi.server import BI_SESSION_SETTINGS, BiServerError, jdbc_url, start_thrift_server
from riskudf.bi.views import publish_bi_objects, readable_tables
from riskudf.config import load_config
from riskudf.entry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from riskudf.lakehouse.metastore import MetastoreError
from riskudf.lakehouse.session import build_spark
from riskudf.safe_logging import BAD_INPUT, setup_logging

log = logging.getLogger("serve_bi")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    parser.add_argument("--port", type=int, help="override bi.port of the config")
    parser.add_argument("--pid-file", type=Path, help="write this process's pid here")
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be a TCP port, got {args.port}")
    setup_logging()
    try:
        conf = load_config(args.conf)
        if args.port is not None:
            conf = conf.model_copy(update={"bi": conf.bi.model_copy(update={"port": args.port})})
        # BI sessions read the output tables and views only (riskudf.bi.OutputsOnly).
        settings = {**conf.spark.settings, **BI_SESSION_SETTINGS}
        spark = build_spark(conf.spark.model_copy(update={"settings": settings}))
        publish_bi_objects(spark, conf)
        server = start_thrift_server(spark, conf.bi, readable=readable_tables(conf))
    except BAD_INPUT as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except (BiServerError, MetastoreError) as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    # From here on SIGINT/SIGTERM stop the server cleanly (before, they end the process at once).
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    url = jdbc_url(conf.bi, conf.tables.database)
    print(
        f"riskudf BI ready: {url} (HiveServer2 protocol; {conf.bi.auth} login; output tables "
        f"and views {conf.tables.database}.v_latest_scores, v_portfolio_summary, v_alerts_open, "
        "v_run_history). Stop with Ctrl-C or `make bi-stop`.",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping the Thrift server")
        if args.pid_file:
            args.pid_file.unlink(missing_ok=True)
        # After Ctrl-C in a terminal the JVM got SIGINT too and may be gone already.
        with contextlib.suppress(Exception):
            server.stop()
        with contextlib.suppress(Exception):
            spark.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
