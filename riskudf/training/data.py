"""Labelled training data from a Delta table, and the seeded split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.model_selection import train_test_split

from riskudf.tables import MissingTableError, SchemaError


class LabelError(ValueError):
    """The label column holds values other than 0 and 1, or a single class."""


@dataclass(frozen=True)
class TrainingData:
    table: str
    version: int | None
    frame: pd.DataFrame  # columns: text, label, and the kept columns present


def _is_path(table: str) -> bool:
    return "/" in table or table.startswith(("file:", "s3", "abfs", "gs:", "hdfs:"))


def read_training_table(spark: SparkSession, table: str) -> tuple[DataFrame, int | None]:
    """A Delta table by name or path, pinned at its current version."""
    from delta.tables import DeltaTable

    if _is_path(table):
        if not DeltaTable.isDeltaTable(spark, table):
            raise MissingTableError(f"no Delta table at {table}")
        delta = DeltaTable.forPath(spark, table)
    else:
        if not spark.catalog.tableExists(table):
            raise MissingTableError(f"table {table} does not exist")
        delta = DeltaTable.forName(spark, table)
    version = int(delta.history(1).select("version").first()["version"])  # type: ignore[index]
    reader = spark.read.format("delta").option("versionAsOf", version)
    frame = reader.load(table) if _is_path(table) else reader.table(table)
    return frame, version


def load_labelled(
    spark: SparkSession,
    table: str,
    *,
    text_col: str,
    label_col: str,
    max_rows: int = 0,
    seed: int = 42,
    keep: Sequence[str] = (),
) -> TrainingData:
    """Text and 0/1 label of a training table, on the driver (training sets fit in memory).

    Columns named in ``keep`` that the table has come along (slice columns for the baseline).
    """
    df, version = read_training_table(spark, table)
    missing = [col for col in (text_col, label_col) if col not in df.columns]
    if missing:
        raise SchemaError(f"table {table}: missing columns {missing}")
    selected = df.select(
        F.coalesce(F.col(text_col).cast("string"), F.lit("")).alias("text"),
        F.col(label_col).cast("int").alias("label"),
        *[F.col(c).cast("string") for c in keep if c in df.columns and c not in ("text", "label")],
    )
    bad = selected.where(~F.col("label").isin(0, 1) | F.col("label").isNull()).count()
    if bad:
        raise LabelError(f"table {table}: column {label_col} has {bad} rows that are not 0 or 1")
    if max_rows:
        total = selected.count()
        if total > max_rows:
            selected = selected.sample(fraction=min(1.0, 1.2 * max_rows / total), seed=seed)
            selected = selected.orderBy(F.rand(seed)).limit(max_rows)
    frame: pd.DataFrame = selected.toPandas()
    if frame["label"].nunique() < 2:
        raise LabelError(f"table {table}: column {label_col} needs both classes 0 and 1")
    return TrainingData(table=table, version=version, frame=frame)


def split_train_validation(
    frame: pd.DataFrame, *, validation_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded split on the label."""
    train, validation = train_test_split(
        frame, test_size=validation_fraction, random_state=seed, stratify=frame["label"]
    )
    return train.reset_index(drop=True), validation.reset_index(drop=True)
