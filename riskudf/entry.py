"""Helpers of the spark-submit entry points: exit codes, dates, summaries, shared arguments."""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import SparkSession

from riskudf.config import RiskConf

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ALERTS = 3  # monitoring raised an alert and conf says alerts fail the run
EXIT_MONITORING_FAILED = 4  # scores published; their monitoring failed (jobs/monitor.py reruns it)


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
