"""Table schemas, schema checks, versioned Delta reads and the output tables' DDL."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession

# Required input columns and their Spark types; extra columns are allowed and ignored.
PORTFOLIO_COLUMNS = {"obligor_id": "string", "segment": "string", "exposure": "double"}
CREDIT_REPORT_COLUMNS = {
    "report_id": "string",
    "obligor_id": "string",
    "report_date": "date",
    "text": "string",
}
FILING_COLUMNS = {
    "filing_id": "string",
    "obligor_id": "string",
    "filing_date": "date",
    "form_type": "string",
    "text": "string",
}
OUTCOME_COLUMNS = {"obligor_id": "string", "observation_date": "date", "default_12m": "int"}

# Output columns: (name, type, not null, comment). The comments land in the metastore.
Column_ = tuple[str, str, bool, str]

SCORED_PORTFOLIO_COLUMNS: tuple[Column_, ...] = (
    ("obligor_id", "STRING", True, "obligor key (pseudonymous), as in the portfolio table"),
    ("as_of_date", "DATE", True, "the date the portfolio was scored as of"),
    ("pd", "DOUBLE", True, "probability of default within 12 months, a fraction from 0 to 1"),
    ("grade", "STRING", True, "grade on the master scale of the scoring config, e.g. AAA to CC"),
    ("decision", "STRING", True, "one of approve, review, decline"),
    ("n_tokens", "INT", True, "tokens in the assembled document, before any cut"),
    ("truncated", "BOOLEAN", True, "true when the document was longer than the model window"),
    ("n_chunks", "INT", True, "model windows scored for the document (1 until chunking)"),
    ("n_filings", "INT", True, "filings in the lookback window that went into the document"),
    ("report_age_days", "INT", True, "days from the credit report's date to the as-of date"),
    ("model_version", "STRING", True, "model_version from the model manifest"),
    ("run_id", "STRING", True, "the scoring run, see score_runs"),
    ("scored_at", "TIMESTAMP", True, "when the run wrote this row (UTC)"),
)

SCORE_RUNS_COLUMNS: tuple[Column_, ...] = (
    ("run_id", "STRING", True, "unique id of the scoring run"),
    ("as_of_date", "DATE", True, "the as-of date scored"),
    ("started_at", "TIMESTAMP", True, "when the run started (UTC)"),
    ("finished_at", "TIMESTAMP", True, "when the run ended (UTC)"),
    ("status", "STRING", True, "one of success, failed"),
    ("rows_in", "BIGINT", False, "rows of the portfolio table read by the run"),
    ("rows_scored", "BIGINT", False, "rows written to scored_portfolio"),
    ("rows_quarantined", "BIGINT", False, "portfolio rows not scored, see scoring_quarantine"),
    ("records_quarantined", "BIGINT", False, "report and filing records set aside"),
    ("model_version", "STRING", False, "model_version from the model manifest"),
    ("input_versions", "MAP<STRING, BIGINT>", False, "Delta version read of each input table"),
    ("duration_s", "DOUBLE", False, "wall time of the run in seconds"),
    ("error", "STRING", False, "exception class of a failed run; never input text"),
)

SCORED_PORTFOLIO_COMMENT = (
    "PD, grade and decision per obligor and as-of date; one row each, from the latest run of "
    "the date (see score_runs for its status)"
)
SCORE_RUNS_COMMENT = "one row per scoring run, written when the run ends"
SCORING_QUARANTINE_COMMENT = (
    "rows and records a run could not score, with a reason code; no input text"
)

# Written by monitoring (issue 3); created empty so that the BI view over it exists from day one.
MONITOR_ALERTS_COLUMNS: tuple[Column_, ...] = (
    ("alert_id", "STRING", True, "unique id of the alert"),
    ("run_id", "STRING", True, "the scoring run the alert was raised on, see score_runs"),
    ("as_of_date", "DATE", True, "as-of date of that run"),
    ("rule", "STRING", True, "the monitoring rule, e.g. psi_pd or default_rate_by_grade"),
    ("severity", "STRING", True, "one of warn, alert"),
    ("metric", "STRING", True, "the measured metric, e.g. population_stability_index"),
    ("slice_key", "STRING", False, "the slicing column, e.g. segment; null for the whole table"),
    ("slice_value", "STRING", False, "the slice, e.g. retail; null for the whole table"),
    ("value", "DOUBLE", True, "the measured value, in the unit of the metric"),
    ("threshold", "DOUBLE", True, "the threshold the value crossed, same unit"),
    ("created_at", "TIMESTAMP", True, "when the alert was raised (UTC)"),
    ("status", "STRING", True, "one of open, acknowledged, closed"),
    ("acknowledged_at", "TIMESTAMP", False, "when the alert was acknowledged (UTC), else null"),
)

# Delta table properties. Retention: the log keeps 90 days of history; files a commit removed
# stay 30 days before VACUUM may delete them, so time travel (VERSION AS OF) and the change data
# feed reach back 30 days. Every as-of date stays in the table itself (one partition per date).
# Deletion vectors and column mapping stay off: delta-rs and DuckDB read these tables directly.
RETENTION_PROPERTIES = {
    "delta.logRetentionDuration": "interval 90 days",
    "delta.deletedFileRetentionDuration": "interval 30 days",
    "delta.enableDeletionVectors": "false",
}
SCORED_PORTFOLIO_PROPERTIES = {
    **RETENTION_PROPERTIES,
    "delta.enableChangeDataFeed": "true",
}


def sql_string(text: str) -> str:
    """A SQL string literal (single quotes, backslashes and quotes escaped)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


SCORING_QUARANTINE_COLUMNS: tuple[Column_, ...] = (
    ("run_id", "STRING", True, "the scoring run, see score_runs"),
    ("as_of_date", "DATE", True, "the as-of date of that run"),
    ("source_table", "STRING", True, "the input table the row or record came from"),
    ("record_key", "STRING", False, "its key there (obligor_id, report_id or filing_id)"),
    ("obligor_id", "STRING", False, "the obligor concerned; null when the key itself is null"),
    ("reason_code", "STRING", True, "why it was set aside, see riskudf/quarantine.py REASONS"),
    ("detail", "STRING", False, "counts and ids only; never input text"),
    ("quarantined_at", "TIMESTAMP", True, "when the run wrote this row (UTC)"),
)

SCORING_LOCKS_COLUMNS: tuple[Column_, ...] = (
    ("as_of_date", "DATE", True, "the as-of date a run is scoring"),
    ("run_id", "STRING", True, "the run that holds the date"),
    ("holder", "STRING", True, "host and process id of that run's driver"),
    ("acquired_at", "TIMESTAMP", True, "UTC"),
    ("expires_at", "TIMESTAMP", True, "after this the lock counts as abandoned (UTC)"),
)


def ddl(columns: tuple[Column_, ...]) -> str:
    """Column list for CREATE TABLE, with NOT NULL constraints and comments."""
    return ", ".join(
        f"{name} {kind}{' NOT NULL' if required else ''} COMMENT {sql_string(comment)}"
        for name, kind, required, comment in columns
    )


def properties_sql(properties: Mapping[str, str]) -> str:
    return ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in properties.items())


def schema(columns: tuple[Column_, ...]) -> str:
    """Column list as a DataFrame schema string (nullable), for createDataFrame."""
    return ", ".join(f"{name} {kind}" for name, kind, _, _ in columns)


class SchemaError(ValueError):
    """An input table lacks a required column or holds it with the wrong type."""


class MissingTableError(ValueError):
    """An input table does not exist."""


class InputError(ValueError):
    """The inputs cannot make a run: an empty portfolio, an as-of date in the future."""


def check_columns(df: DataFrame, table: str, required: Mapping[str, str]) -> None:
    """Raise SchemaError naming the table and every missing or mistyped column."""
    actual = {field.name: field.dataType.simpleString() for field in df.schema.fields}
    missing = sorted(col for col in required if col not in actual)
    mistyped = sorted(
        f"{col} is {actual[col]}, expected {kind}"
        for col, kind in required.items()
        if col in actual and actual[col] != kind
    )
    if missing or mistyped:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if mistyped:
            parts.append("; ".join(mistyped))
        raise SchemaError(f"table {table}: {'; '.join(parts)}")


def latest_version(spark: SparkSession, table: str) -> int:
    """The current Delta version of a table."""
    if not spark.catalog.tableExists(table):
        raise MissingTableError(f"table {table} does not exist")
    try:
        row = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").select("version").first()
    except AnalysisException:
        raise SchemaError(f"table {table} is not a Delta table") from None
    if row is None:
        raise MissingTableError(f"table {table} has no Delta history")
    return int(row["version"])


def read_versioned(
    spark: SparkSession, table: str, required: Mapping[str, str]
) -> tuple[DataFrame, int]:
    """Read a Delta table pinned at its current version and check its columns."""
    version = latest_version(spark, table)
    df = spark.sql(f"SELECT * FROM {table} VERSION AS OF {version}")
    check_columns(df, table, required)
    return df, version


def ensure_database(spark: SparkSession, database: str) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")


def ensure_table(
    spark: SparkSession,
    table: str,
    columns: tuple[Column_, ...],
    *,
    partitioned_by: str | None = None,
    comment: str = "",
    properties: Mapping[str, str] | None = None,
) -> None:
    """Create a Delta table with the given columns if it does not exist yet.

    A table made by an older release gets the columns it lacks (nullable: Delta cannot add a
    NOT NULL column to a table that has rows).
    """
    partition = f"PARTITIONED BY ({partitioned_by})" if partitioned_by else ""
    props = f"TBLPROPERTIES ({properties_sql(properties)})" if properties else ""
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {table} ({ddl(columns)}) USING DELTA {partition} "
        f"COMMENT {sql_string(comment)} {props}"
    )
    present = set(spark.table(table).columns)
    missing = tuple((n, k, False, c) for n, k, _, c in columns if n not in present)
    if missing:
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({ddl(missing)})")


def restore(spark: SparkSession, table: str, version: int) -> None:
    """Put a Delta table back to an earlier version (one new commit), if it moved since."""
    if latest_version(spark, table) != version:
        spark.sql(f"RESTORE TABLE {table} TO VERSION AS OF {version}")


def replace_where(df: DataFrame, table: str, condition: Column) -> None:
    """Atomically replace the rows of ``table`` matching ``condition`` with ``df``."""
    df.writeTo(table).overwrite(condition)


def append(df: DataFrame, table: str) -> None:
    df.writeTo(table).append()


def overwrite_table(df: DataFrame, table: str) -> None:
    """Create or atomically replace a whole Delta table (demo data, training sets)."""
    df.writeTo(table).using("delta").createOrReplace()
