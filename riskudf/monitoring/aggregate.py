"""Spark reductions of scored rows to the small aggregates the metrics need.

Each function is a DataFrame -> DataFrame transform ending in a ``groupBy``: the executors do
the work and the driver collects at most (slices x columns x fine bins) rows, however large the
portfolio. Slices are made by exploding each row into (slice_key, slice_value) pairs: the whole
table (null, null) and one pair per slice column.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from riskudf.monitoring.baseline import ColumnHistogram, Histograms
from riskudf.monitoring.columns import NULL_SLICE, bin_index
from riskudf.monitoring.metrics import PD_GRID, Grid, Histogram

QUANTILE_PROBS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
# percentile_approx accuracy: the rank of a returned quantile is within count / accuracy.
QUANTILE_ACCURACY = 10_000
DISTINCT_RSD = 0.01  # approx_count_distinct relative standard deviation (pd only)


def with_attributes(df: DataFrame, portfolio: DataFrame, columns: Iterable[str]) -> DataFrame:
    """Join the portfolio's slice and fairness attributes on obligor_id (left join)."""
    wanted = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if not wanted:
        return df
    attributes = portfolio.select("obligor_id", *wanted).dropDuplicates(["obligor_id"])
    return df.join(attributes, "obligor_id", "left")


def slice_pairs(columns: Iterable[str]) -> Column:
    """Array of (slice_key, slice_value) structs: the whole table, then one per column."""
    pairs = [
        F.struct(
            F.lit(None).cast("string").alias("slice_key"),
            F.lit(None).cast("string").alias("slice_value"),
        )
    ]
    for name in columns:
        pairs.append(
            F.struct(
                F.lit(name).alias("slice_key"),
                F.coalesce(F.col(name).cast("string"), F.lit(NULL_SLICE)).alias("slice_value"),
            )
        )
    return F.array(*pairs)


def _sliced(df: DataFrame, slice_columns: Iterable[str]) -> DataFrame:
    return df.withColumn("_slice", F.explode(slice_pairs(slice_columns))).select(
        "*",
        F.col("_slice.slice_key").alias("slice_key"),
        F.col("_slice.slice_value").alias("slice_value"),
    )


def histograms(
    rows: DataFrame,
    *,
    slice_columns: Iterable[str],
    numeric: dict[str, Grid],
    categorical: Iterable[str],
) -> DataFrame:
    """Counts per (slice, column, fine bin or category); a null value has both null."""
    entries = [
        F.struct(
            F.lit(name).alias("column_name"),
            bin_index(F.col(name), grid).alias("bin_index"),
            F.lit(None).cast("string").alias("category"),
        )
        for name, grid in numeric.items()
    ] + [
        F.struct(
            F.lit(name).alias("column_name"),
            F.lit(None).cast("long").alias("bin_index"),
            F.col(name).cast("string").alias("category"),
        )
        for name in categorical
    ]
    return (
        _sliced(rows, slice_columns)
        .select("slice_key", "slice_value", F.explode(F.array(*entries)).alias("e"))
        .groupBy("slice_key", "slice_value", "e.column_name", "e.bin_index", "e.category")
        .agg(F.count(F.lit(1)).alias("count"))
    )


def numeric_profile(
    rows: DataFrame, *, slice_columns: Iterable[str], numeric: Iterable[str]
) -> DataFrame:
    """count, nulls, mean, stddev, min, max, quantiles, approximate distinct count."""
    entries = [
        F.struct(F.lit(name).alias("column_name"), F.col(name).cast("double").alias("value"))
        for name in numeric
    ]
    value = F.col("e.value")
    probs = F.array(*[F.lit(p) for p in QUANTILE_PROBS])
    return (
        _sliced(rows, slice_columns)
        .select("slice_key", "slice_value", F.explode(F.array(*entries)).alias("e"))
        .groupBy("slice_key", "slice_value", "e.column_name")
        .agg(
            F.count(F.lit(1)).alias("count"),
            F.count(value).alias("non_null"),
            F.avg(value).alias("avg"),
            F.stddev_samp(value).alias("stddev"),
            F.min(value).alias("min"),
            F.max(value).alias("max"),
            F.percentile_approx(value, probs, QUANTILE_ACCURACY).alias("quantiles"),
            F.approx_count_distinct(value, DISTINCT_RSD).alias("approx_distinct"),
        )
    )


def outcome_bins(rows: DataFrame, *, slice_columns: Iterable[str]) -> DataFrame:
    """Per (slice, cohort, grade, decision, pd bin, outcome): count and exact per-bin sums.

    ``rows`` holds scored rows of matured cohorts joined with their outcome ``default_12m``.
    """
    y = F.col("default_12m").cast("double")
    pd = F.col("pd")
    clipped = F.least(F.greatest(pd, F.lit(_LOG_LOSS_EPS)), F.lit(1.0 - _LOG_LOSS_EPS))
    log_loss = -(y * F.log(clipped) + (F.lit(1.0) - y) * F.log(F.lit(1.0) - clipped))
    return (
        _sliced(rows, slice_columns)
        .withColumn("pd_bin", bin_index(pd, PD_GRID))
        .groupBy(
            "slice_key",
            "slice_value",
            F.col("as_of_date").alias("cohort_date"),
            F.col("run_id").alias("cohort_run_id"),
            "grade",
            "decision",
            "pd_bin",
            "default_12m",
        )
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(pd).alias("sum_pd"),
            F.sum((pd - y) * (pd - y)).alias("sum_brier"),
            F.sum(log_loss).alias("sum_log_loss"),
        )
    )


_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def grade_pd_cells(rows: DataFrame) -> DataFrame:
    """Per (grade, PD bin): obligors and the sum of their PDs (monitoring.estimate)."""
    return rows.groupBy("grade", bin_index(F.col("pd"), PD_GRID).alias("pd_bin")).agg(
        F.count(F.lit(1)).alias("n"), F.sum("pd").alias("sum_pd")
    )


def migration_counts(
    current: DataFrame, previous: DataFrame, portfolio: DataFrame, *, slice_columns: list[str]
) -> DataFrame:
    """(slice, from_grade, to_grade) counts over all obligors of either run.

    A null from_grade is an obligor new in this run; a null to_grade one that left.
    """
    joined = current.select("obligor_id", F.col("grade").alias("to_grade")).join(
        previous.select("obligor_id", F.col("grade").alias("from_grade")), "obligor_id", "full"
    )
    joined = with_attributes(joined, portfolio, slice_columns)
    return (
        _sliced(joined, slice_columns)
        .groupBy("slice_key", "slice_value", "from_grade", "to_grade")
        .agg(F.count(F.lit(1)).alias("count"))
    )


def collect_histograms(rows: list[Row], numeric: dict[str, Grid]) -> Histograms:
    """Driver side: the collected histogram rows as one ColumnHistogram per slice and column."""
    bins: dict[tuple[str | None, str | None, str], dict[int, int]] = defaultdict(dict)
    categories: dict[tuple[str | None, str | None, str], dict[str, int]] = defaultdict(dict)
    totals: dict[tuple[str | None, str | None, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        key = (row["slice_key"], row["slice_value"], row["column_name"])
        count = int(row["count"])
        totals[key][0] += count
        if row["bin_index"] is not None:
            bins[key][int(row["bin_index"])] = bins[key].get(int(row["bin_index"]), 0) + count
        elif row["category"] is not None:
            categories[key][row["category"]] = categories[key].get(row["category"], 0) + count
        else:
            totals[key][1] += count
    result: Histograms = {}
    for key, (rows_in, nulls) in totals.items():
        name = key[2]
        if name in numeric:
            hist = Histogram.from_mapping(numeric[name], bins.get(key, {}))
            result[key] = ColumnHistogram(rows_in, nulls, numeric=hist)
        else:
            result[key] = ColumnHistogram(rows_in, nulls, categories=dict(categories.get(key, {})))
    return result
