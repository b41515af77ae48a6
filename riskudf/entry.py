"""Helpers of the spark-submit entry points: exit codes, dates, summaries, shared arguments."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable

from pyspark.sql import SparkSession

from riskudf.config import RiskConf, load_config
from riskudf.lakehouse.delta import quote_name
from riskudf.safe_logging import BAD_INPUT, safe_message, setup_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ALERTS = 3  # monitoring raised an alert and conf says alerts fail the run
EXIT_MONITORING_FAILED = 4  # scores published; their monitoring failed (jobs/monitor.py reruns it)
EXIT_NOT_REPRODUCED = 5  # --reproduce found rows that differ from the stored ones
EXIT_BENCHMARK_WINS = 6  # train: TF-IDF + LR beat the transformer; the model was set aside
EXIT_PROMOTION_REFUSED = 7  # promote: a red test; no alias changed (recorded in model_promotions)


def add_conf_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--conf`` argument of every job."""
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")


def run_job(
    conf_path: str,
    body: Callable[[RiskConf], int],
    *,
    log: logging.Logger,
    failure: str,
    bad_input: tuple[type[Exception], ...] = (),
) -> int:
    """Set up logging, load the conf and return ``body(conf)``'s exit code; bad input (BAD_INPUT
    and ``bad_input``) is logged with its message and gives 2, any other error is logged as
    ``failure: <safe_message>`` and gives 1."""
    setup_logging()
    bad: tuple[type[Exception], ...] = (*BAD_INPUT, *bad_input)
    try:
        return body(load_config(conf_path))
    except bad as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("%s: %s", failure, safe_message(exc))
        return EXIT_FAILED


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def iso_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp, aware: UTC unless it carries an offset."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def table_location(spark: SparkSession, table: str) -> str:
    row = spark.sql(f"DESCRIBE DETAIL {quote_name(table)}").select("location").first()
    return str(row["location"]) if row else "?"


def grade_lines(grade_counts: dict[str, int], conf: RiskConf) -> list[str]:
    """Counts per grade in master-scale order, every grade shown."""
    return [
        f"  {band.grade:<6} {grade_counts.get(band.grade, 0):>8}"
        for band in conf.grading.master_scale
    ]
