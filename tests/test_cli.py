"""The jobs' logging setup."""

from __future__ import annotations

import pytest
from pyspark.errors import PySparkException
from pyspark.sql import functions as F

from riskudf.cli import setup_logging


def test_spark_errors_with_a_query_context_do_not_print_input_values(spark, capfd) -> None:
    setup_logging()
    frame = spark.createDataFrame([("Jane Q. Applicant",)], "name string")
    with pytest.raises(PySparkException):
        frame.select(F.col("name").cast("date")).collect()
    assert "Jane Q. Applicant" not in capfd.readouterr().err
