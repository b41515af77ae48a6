"""The jobs' logging setup."""

from __future__ import annotations

import logging

import pytest
from pyspark.errors import PySparkException
from pyspark.sql import functions as F

from riskudf.safe_logging import setup_logging
from riskudf.scoring.progress import LOGGER as PROGRESS_LOGGER


@pytest.fixture
def job_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup_logging as a job runs it, with the loggers it changes restored afterwards."""
    progress = logging.getLogger(PROGRESS_LOGGER)
    monkeypatch.setattr(progress, "handlers", list(progress.handlers))
    monkeypatch.setattr(progress, "propagate", progress.propagate)
    for name in (
        "DataFrameQueryContextLogger",
        "SQLQueryContextLogger",
        "py4j",
        "transformers",
        "urllib3",
    ):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logger.level)
    setup_logging()


def test_spark_errors_with_a_query_context_do_not_print_input_values(
    spark, capfd, job_logging
) -> None:
    frame = spark.createDataFrame([("Jane Q. Applicant",)], "name string")
    with pytest.raises(PySparkException):
        frame.select(F.col("name").cast("date")).collect()
    assert "Jane Q. Applicant" not in capfd.readouterr().err
