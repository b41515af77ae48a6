"""The monitored columns of the scored table and how each is binned.

A column that the scored table does not carry (yet) is skipped, so columns added to the scored
table later (chunks, filings, report age) are monitored as soon as they appear.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from riskudf.monitoring.metrics import COUNT_GRID, PD_GRID, Grid

# Numeric columns and their fine grids: pd in 1e-4 bins, integer counts one bin per value.
NUMERIC_COLUMNS: dict[str, Grid] = {
    "pd": PD_GRID,
    "n_tokens": COUNT_GRID,
    "n_chunks": COUNT_GRID,
    "n_filings": COUNT_GRID,
    "report_age_days": COUNT_GRID,
}
CATEGORICAL_COLUMNS: tuple[str, ...] = ("grade", "decision", "truncated", "empty_document")
# A document of only the special tokens ([CLS] [SEP]) is empty.
EMPTY_DOCUMENT_MAX_TOKENS = 2
TABLE_COLUMN = ":table"
NULL_SLICE = ":null"


def add_derived_columns(scored: DataFrame) -> DataFrame:
    """Flags computed from the scored columns: ``empty_document``."""
    return scored.withColumn(
        "empty_document", F.col("n_tokens") <= F.lit(EMPTY_DOCUMENT_MAX_TOKENS)
    )


def present_numeric(df: DataFrame) -> dict[str, Grid]:
    return {name: grid for name, grid in NUMERIC_COLUMNS.items() if name in df.columns}


def present_categorical(df: DataFrame) -> tuple[str, ...]:
    return tuple(name for name in CATEGORICAL_COLUMNS if name in df.columns)


def bin_index(value: Column, grid: Grid) -> Column:
    """Spark mirror of ``Grid.index_of``: floor((value - lo) / width), clipped when bounded."""
    index = F.floor((value.cast("double") - F.lit(grid.lo)) / F.lit(grid.width)).cast("long")
    if grid.bins is not None:
        index = F.least(F.greatest(index, F.lit(0)), F.lit(grid.bins - 1))
    return index
