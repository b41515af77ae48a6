"""Delta plumbing: schema checks, versioned reads, writes, DDL, restore, and the input errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.lakehouse.schemas import ColumnSpec


def quote_name(name: str) -> str:
    """A table or database name (``db.table``) as quoted SQL identifiers: `db`.`table`.

    Conf names are plain identifiers already (config.TablesConf); quoting is the second guard,
    so that no name can end a statement or start another."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


def sql_string(text: str) -> str:
    """A SQL string literal (single quotes, backslashes and quotes escaped)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def ddl(columns: tuple[ColumnSpec, ...]) -> str:
    """Column list for CREATE TABLE, with NOT NULL constraints and comments."""
    return ", ".join(
        f"{name} {kind}{' NOT NULL' if required else ''} COMMENT {sql_string(comment)}"
        for name, kind, required, comment in columns
    )


def properties_sql(properties: Mapping[str, str]) -> str:
    return ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in properties.items())


def schema(columns: tuple[ColumnSpec, ...]) -> str:
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
    if not spark.catalog.tableExists(quote_name(table)):
        raise MissingTableError(f"table {table} does not exist")
    try:
        row = spark.sql(f"DESCRIBE HISTORY {quote_name(table)} LIMIT 1").select("version").first()
    except AnalysisException:
        raise SchemaError(f"table {table} is not a Delta table") from None
    if row is None:
        raise MissingTableError(f"table {table} has no Delta history")
    return int(row["version"])


def version_at(spark: SparkSession, table: str, at: dt.datetime) -> int:
    """The last Delta version of ``table`` committed at or before ``at`` (aware, or UTC)."""
    latest = latest_version(spark, table)  # the table exists and is a Delta table
    moment = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    row = (
        spark.sql(f"DESCRIBE HISTORY {quote_name(table)}")
        .where(F.col("timestamp") <= F.lit(moment))
        .agg(F.max("version").alias("version"))
        .first()
    )
    if row is None or row["version"] is None:
        raise InputError(
            f"table {table} has no version committed at or before {moment.isoformat()} "
            "(it did not exist yet, or that history is past its log retention)"
        )
    return min(int(row["version"]), latest)


def read_version(
    spark: SparkSession, table: str, version: int, required: Mapping[str, str]
) -> DataFrame:
    """Read a Delta table at ``version`` and check its columns."""
    df = spark.sql(f"SELECT * FROM {quote_name(table)} VERSION AS OF {int(version)}")
    check_columns(df, table, required)
    return df


def read_versioned(
    spark: SparkSession, table: str, required: Mapping[str, str]
) -> tuple[DataFrame, int]:
    """Read a Delta table pinned at its current version and check its columns."""
    version = latest_version(spark, table)
    return read_version(spark, table, version, required), version


def ensure_database(spark: SparkSession, database: str) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote_name(database)}")


def ensure_table(
    spark: SparkSession,
    table: str,
    columns: tuple[ColumnSpec, ...],
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
        f"CREATE TABLE IF NOT EXISTS {quote_name(table)} ({ddl(columns)}) USING DELTA {partition} "
        f"COMMENT {sql_string(comment)} {props}"
    )
    present = set(spark.table(table).columns)
    missing = tuple((n, k, False, c) for n, k, _, c in columns if n not in present)
    if missing:
        spark.sql(f"ALTER TABLE {quote_name(table)} ADD COLUMNS ({ddl(missing)})")


def partition_by(spark: SparkSession, table: str, column: str) -> bool:
    """Rewrite an unpartitioned Delta table partitioned by ``column``, in one atomic commit
    that keeps its rows, column comments, table comment, properties and history; False when it
    is partitioned so already.

    REPLACE ... AS SELECT makes every column nullable: the NOT NULL constraints of the old table
    are not kept (its writers fill those columns anyway). A metadata change: writers of the
    table at that moment fail (and may retry).
    """
    detail = spark.sql(f"DESCRIBE DETAIL {quote_name(table)}").first()
    assert detail is not None
    current = list(detail["partitionColumns"])
    if current == [column]:
        return False
    if current:
        raise SchemaError(f"table {table} is partitioned by {current}, expected [{column}]")
    version = latest_version(spark, table)
    properties = dict(detail["properties"])
    props = f"TBLPROPERTIES ({properties_sql(properties)})" if properties else ""
    comment = f"COMMENT {sql_string(detail['description'])}" if detail["description"] else ""
    spark.sql(
        f"REPLACE TABLE {quote_name(table)} USING DELTA PARTITIONED BY ({column}) {comment} "
        f"{props} AS SELECT * FROM {quote_name(table)} VERSION AS OF {int(version)}"
    )
    return True


def restore(spark: SparkSession, table: str, version: int) -> None:
    """Put a Delta table back to an earlier version (one new commit), if it moved since."""
    if latest_version(spark, table) != version:
        spark.sql(f"RESTORE TABLE {quote_name(table)} TO VERSION AS OF {int(version)}")


def replace_where(df: DataFrame, table: str, condition: Column) -> None:
    """Atomically replace the rows of ``table`` matching ``condition`` with ``df``."""
    df.writeTo(table).overwrite(condition)


def ensure_table_and_database(
    spark: SparkSession,
    table: str,
    columns: tuple[ColumnSpec, ...],
    *,
    comment: str,
    properties: Mapping[str, str],
) -> None:
    """ensure_table, creating the table's database first when the name has one."""
    if "." in table:
        ensure_database(spark, table.rsplit(".", 1)[0])
    ensure_table(spark, table, columns, comment=comment, properties=properties)


def append(df: DataFrame, table: str) -> None:
    df.writeTo(table).append()


def overwrite_table(df: DataFrame, table: str) -> None:
    """Create or atomically replace a whole Delta table (demo data, training sets)."""
    df.writeTo(table).using("delta").createOrReplace()
