"""Validation rules for the inputs of a scoring run, and the reasons a row cannot be scored.

Rules are Spark column expressions: they run on the executors next to the data. A reason's
detail carries counts, dates and keys only, never input text.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

REASONS = {
    "NULL_KEY": "the key column is null or blank",
    "NULL_DATE": "the record has no date",
    "DUPLICATE_KEY": "the key appears more than once in its table",
    "FUTURE_DATE": "the record is dated after the day of the run",
    "EMPTY_TEXT": "the text is null, empty or only whitespace",
    "NOT_TEXT": "the text holds NUL, replacement or many control characters "
    "(binary content or a broken encoding)",
    "NO_REPORT": "the obligor has no credit report dated on or before the as-of date",
    "TOO_LARGE": "the assembled document is longer than scoring.max_document_chars",
    "NOT_SCORED": "the model returned no probability for the document",
}

# Binary or mis-decoded content: a NUL or U+FFFD (what a lossy decode leaves) anywhere, or a
# share of other control characters (tab, line feed, carriage return, form feed excepted).
_HARD_BAD = r"[\x00\x{FFFD}]"
_CONTROL = r"[\x01-\x08\x0B\x0E-\x1F\x7F-\x9F]"
MAX_CONTROL_SHARE = 0.01
# Whitespace and the invisible characters that look like nothing (zero-width, BOM).
_BLANK = r"^[\s\p{Z}\x{200B}-\x{200D}\x{2060}\x{FEFF}]*$"

# Quarantine rows before the run's own columns are added.
QUARANTINE_FIELDS = ("source_table", "record_key", "obligor_id", "reason_code", "detail")


def _count(text: Column, pattern: str) -> Column:
    return F.length(text) - F.length(F.regexp_replace(text, pattern, ""))


def text_problem(text: Column) -> Column:
    """EMPTY_TEXT or NOT_TEXT for unusable text, else null."""
    controls = _count(text, _CONTROL)
    return (
        F.when(text.isNull() | text.rlike(f"(?U){_BLANK}"), F.lit("EMPTY_TEXT"))
        .when(text.rlike(_HARD_BAD), F.lit("NOT_TEXT"))
        .when(controls > F.length(text) * MAX_CONTROL_SHARE, F.lit("NOT_TEXT"))
        .otherwise(F.lit(None).cast("string"))
    )


def text_detail(text: Column) -> Column:
    """Counts that explain text_problem, without any of the text."""
    bad = _count(text, _HARD_BAD) + _count(text, _CONTROL)
    return (
        F.when(text.isNull(), F.lit("text is null"))
        .when(F.length(text) == 0, F.lit("text is empty"))
        .otherwise(
            F.format_string(
                "%d characters, %d of them NUL, replacement or control characters",
                F.length(text),
                bad,
            )
        )
    )


def flag_records(records: DataFrame, *, key: str, date_col: str, today: dt.date) -> DataFrame:
    """Add ``problem`` and ``problem_detail``: null key or date, duplicate key, future date."""
    copies = F.count(F.lit(1)).over(Window.partitionBy(key))
    blank_key = F.col(key).isNull() | (F.trim(F.col(key)) == "")
    return (
        records.withColumn("_copies", copies)
        .select(
            "*",
            F.when(blank_key, F.lit("NULL_KEY"))
            .when(F.col(date_col).isNull(), F.lit("NULL_DATE"))
            .when(F.col("_copies") > 1, F.lit("DUPLICATE_KEY"))
            .when(F.col(date_col) > F.lit(today), F.lit("FUTURE_DATE"))
            .alias("problem"),
            F.when(blank_key, F.lit(f"{key} is null or blank"))
            .when(F.col(date_col).isNull(), F.lit(f"{date_col} is null"))
            .when(
                F.col("_copies") > 1, F.format_string(f"{key} appears %d times", F.col("_copies"))
            )
            .when(
                F.col(date_col) > F.lit(today),
                F.format_string(
                    f"{date_col} %s is after the run date {today.isoformat()}",
                    F.col(date_col).cast("string"),
                ),
            )
            .alias("problem_detail"),
        )
        .drop("_copies")
    )


def flag_text(records: DataFrame, *, applies: Column) -> DataFrame:
    """Fill ``problem`` from the ``text`` column where it is still empty and ``applies`` holds."""
    bad_text = applies & F.col("problem").isNull() & text_problem(F.col("text")).isNotNull()
    return records.withColumns(
        {
            "problem": F.when(bad_text, text_problem(F.col("text"))).otherwise(F.col("problem")),
            "problem_detail": F.when(bad_text, text_detail(F.col("text"))).otherwise(
                F.col("problem_detail")
            ),
        }
    )


def record_rows(flagged: DataFrame, *, source_table: str, key: str) -> DataFrame:
    """Quarantine rows for the flagged records of an input table."""
    return flagged.where(F.col("problem").isNotNull()).select(
        F.lit(source_table).alias("source_table"),
        F.col(key).cast("string").alias("record_key"),
        F.col("obligor_id").cast("string").alias("obligor_id"),
        F.col("problem").alias("reason_code"),
        F.col("problem_detail").alias("detail"),
    )


def obligor_rows(
    frame: DataFrame, *, source_table: str, reason: Column, detail: Column
) -> DataFrame:
    """Quarantine rows keyed by obligor: one per row of ``frame``."""
    return frame.select(
        F.lit(source_table).alias("source_table"),
        F.col("obligor_id").alias("record_key"),
        "obligor_id",
        reason.alias("reason_code"),
        detail.alias("detail"),
    )


def split_portfolio(portfolio: DataFrame, *, source_table: str) -> tuple[DataFrame, DataFrame]:
    """The portfolio's usable rows (one per obligor) and quarantine rows for the others.

    A null or blank key is set aside row by row; a key that appears more than once is set aside
    once, with the number of rows.
    """
    blank = F.col("obligor_id").isNull() | (F.trim(F.col("obligor_id")) == "")
    counted = portfolio.withColumn(
        "_copies", F.count(F.lit(1)).over(Window.partitionBy("obligor_id"))
    )
    usable = counted.where(~blank & (F.col("_copies") == 1)).drop("_copies")
    null_keys = counted.where(blank).select(
        F.lit(source_table).alias("source_table"),
        F.lit(None).cast("string").alias("record_key"),
        F.lit(None).cast("string").alias("obligor_id"),
        F.lit("NULL_KEY").alias("reason_code"),
        F.lit("obligor_id is null or blank").alias("detail"),
    )
    duplicates = (
        counted.where(~blank & (F.col("_copies") > 1))
        .groupBy("obligor_id")
        .agg(F.first("_copies").alias("_copies"))
    )
    duplicates = obligor_rows(
        duplicates,
        source_table=source_table,
        reason=F.lit("DUPLICATE_KEY"),
        detail=F.format_string("obligor_id appears %d times", F.col("_copies")),
    )
    return usable, null_keys.unionByName(duplicates)


def split_documents(
    documents: DataFrame, *, source_table: str, as_of: dt.date, max_chars: int
) -> tuple[DataFrame, DataFrame]:
    """Documents that can be scored, and quarantine rows for the obligors whose cannot.

    ``documents`` is assemble_documents' output: ``report_problem`` and its detail come from the
    obligor's latest report (on or before ``as_of``).
    """
    reason = (
        F.when(F.col("report_id").isNull() & F.col("report_problem").isNull(), F.lit("NO_REPORT"))
        .when(F.col("report_problem").isNotNull(), F.col("report_problem"))
        .when(F.length("document") > max_chars, F.lit("TOO_LARGE"))
    )
    detail = (
        F.when(
            F.col("report_id").isNull() & F.col("report_problem").isNull(),
            F.lit(f"no credit report dated on or before {as_of.isoformat()}"),
        )
        .when(
            F.col("report_problem").isNotNull(),
            F.concat(
                F.lit("latest report "),
                F.coalesce(F.col("report_id"), F.lit("(no id)")),
                F.lit(": "),
                F.col("report_problem_detail"),
            ),
        )
        .when(
            F.length("document") > max_chars,
            F.format_string(
                f"document has %d characters, the cap is {max_chars}", F.length("document")
            ),
        )
    )
    flagged = documents.withColumns({"_reason": reason, "_detail": detail})
    scorable = flagged.where(F.col("_reason").isNull()).drop("_reason", "_detail")
    rejected = obligor_rows(
        flagged.where(F.col("_reason").isNotNull()),
        source_table=source_table,
        reason=F.col("_reason"),
        detail=F.col("_detail"),
    )
    return scorable, rejected
