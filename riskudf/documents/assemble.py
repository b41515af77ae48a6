"""Point-in-time document assembly: reports and filings -> one document per obligor."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from riskudf.documents.quarantine import text_detail, text_problem

DOCUMENT_COLUMNS = (
    "obligor_id",
    "segment",
    "report_id",
    "report_date",
    "report_age_days",
    "report_problem",
    "report_problem_detail",
    "n_filings",
    "document",
)


def _section(header: Column, body: Column) -> Column:
    return F.concat(F.lit("["), header, F.lit("]\n"), body)


def latest_reports(reports: DataFrame, *, as_of: dt.date) -> DataFrame:
    """Each obligor's latest credit report dated on or before ``as_of``.

    Ties on the date go to the highest report_id, so the choice is deterministic. The report's
    ``report_problem`` (flag_records' ``problem`` where the input carries one, else a text
    problem) says whether it can be used; an unusable latest report is not replaced by an
    older one.
    """
    if "problem" not in reports.columns:
        reports = reports.withColumns(
            {"problem": F.lit(None).cast("string"), "problem_detail": F.lit(None).cast("string")}
        )
    order = Window.partitionBy("obligor_id").orderBy(
        F.col("report_date").desc(), F.col("report_id").desc()
    )
    return (
        reports.where(F.col("report_date") <= F.lit(as_of))
        .withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") == 1)
        .select(
            "obligor_id",
            "report_id",
            "report_date",
            _section(
                F.concat(F.lit("CREDIT REPORT "), F.col("report_date").cast("string")),
                F.col("text"),
            ).alias("report_text"),
            F.coalesce(F.col("problem"), text_problem(F.col("text"))).alias("report_problem"),
            F.coalesce(F.col("problem_detail"), text_detail(F.col("text"))).alias(
                "report_problem_detail"
            ),
        )
        .withColumn(
            "report_problem_detail",
            F.when(F.col("report_problem").isNotNull(), F.col("report_problem_detail")),
        )
    )


def recent_filings(filings: DataFrame, *, as_of: dt.date, lookback_days: int) -> DataFrame:
    """Per obligor, the filings dated in (as_of - lookback_days, as_of], newest first."""
    start = F.date_sub(F.lit(as_of), lookback_days)
    in_window = filings.where(
        (F.col("filing_date") <= F.lit(as_of)) & (F.col("filing_date") > start)
    )
    entries = F.sort_array(
        F.collect_list(F.struct("filing_date", "filing_id", "form_type", "text")), asc=False
    )
    return (
        in_window.groupBy("obligor_id")
        .agg(entries.alias("_filings"))
        .select(
            "obligor_id",
            F.size("_filings").alias("n_filings"),
            F.array_join(
                F.transform(
                    "_filings",
                    lambda f: _section(
                        F.concat(
                            F.lit("FILING "),
                            f["form_type"],
                            F.lit(" "),
                            f["filing_date"].cast("string"),
                        ),
                        f["text"],
                    ),
                ),
                "\n\n",
            ).alias("filings_text"),
        )
    )


def assemble_documents(
    portfolio: DataFrame,
    reports: DataFrame,
    filings: DataFrame,
    *,
    as_of: dt.date,
    filing_lookback_days: int,
) -> DataFrame:
    """One document per obligor in ``portfolio`` as of a date.

    The document is the latest report on or before ``as_of`` followed by the filings of the
    lookback window, newest first. An obligor with neither gets an empty document and a null
    report_id; nothing dated after ``as_of`` is used. Rows are not filtered here: see
    quarantine.split_documents.
    """
    report = latest_reports(reports, as_of=as_of)
    filing = recent_filings(filings, as_of=as_of, lookback_days=filing_lookback_days)
    return (
        portfolio.select("obligor_id", "segment")
        .join(report, "obligor_id", "left")
        .join(filing, "obligor_id", "left")
        .select(
            "obligor_id",
            "segment",
            "report_id",
            "report_date",
            F.datediff(F.lit(as_of), F.col("report_date")).alias("report_age_days"),
            "report_problem",
            "report_problem_detail",
            F.coalesce(F.col("n_filings"), F.lit(0)).alias("n_filings"),
            F.concat_ws("\n\n", "report_text", "filings_text").alias("document"),
        )
    )
