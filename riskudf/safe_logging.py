"""Logging for the jobs without personal data: setup_logging and safe_message."""

from __future__ import annotations

import logging
import sys

from pyspark.logger import PySparkLogger

from riskudf.config import ConfigError
from riskudf.lakehouse.delta import InputError, MissingTableError, SchemaError
from riskudf.model.artifact import ArtifactError
from riskudf.scoring.progress import LOGGER as PROGRESS_LOGGER

BAD_INPUT = (ConfigError, SchemaError, MissingTableError, ArtifactError, InputError)


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Progress lines are JSON already (riskudf.scoring.progress): printed as they are, one per line.
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
