"""Shared bits of the spark-submit entry points: logging, dates, exit codes, summaries."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from pyspark.logger import PySparkLogger
from pyspark.sql import SparkSession

from riskudf.config import ConfigError, RiskConf
from riskudf.model.artifact import ArtifactError
from riskudf.progress import LOGGER as PROGRESS_LOGGER
from riskudf.tables import InputError, MissingTableError, SchemaError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ALERTS = 3  # monitoring raised an alert and conf says alerts fail the run
EXIT_MONITORING_FAILED = 4  # scores published; their monitoring failed (jobs/monitor.py reruns it)
BAD_INPUT = (ConfigError, SchemaError, MissingTableError, ArtifactError, InputError)


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Progress lines are JSON already (riskudf.progress): printed as they are, one per line.
    progress = logging.getLogger(PROGRESS_LOGGER)
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.propagate = False
    # PySpark 4 prints every error that has a query context on its own (message and code
    # fragment): a cast error quotes the input value, so these stay silent; errors reach the
    # log through safe_message.
    for spark_logger in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(spark_logger).setLevel(logging.CRITICAL)


def safe_message(exc: BaseException) -> str:
    """An error for the log without input data: riskudf's own messages name tables, columns,
    keys and counts; anything else (Spark, Py4J, a library) is reduced to its class, since its
    text can quote a failed task's input.
    """
    name = type(exc).__name__
    if type(exc).__module__.startswith("riskudf.") or isinstance(exc, BAD_INPUT):
        return f"{name}: {exc}"
    error_class = getattr(exc, "getCondition", lambda: None)()
    return f"{name} ({error_class})" if error_class else name


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def table_location(spark: SparkSession, table: str) -> str:
    row = spark.sql(f"DESCRIBE DETAIL {table}").select("location").first()
    return str(row["location"]) if row else "?"


def grade_lines(grade_counts: dict[str, int], conf: RiskConf) -> list[str]:
    """Counts per grade in master-scale order, every grade shown."""
    return [
        f"  {band.grade:<6} {grade_counts.get(band.grade, 0):>8}"
        for band in conf.grading.master_scale
    ]
