"""The model registry: one row per trained model in a Delta table (``risk.model_registry``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.lakehouse.delta import append, ensure_table_and_database, schema
from riskudf.lakehouse.schemas import (
    MODEL_REGISTRY_COLUMNS,
    MODEL_REGISTRY_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.model.artifact import ArtifactError, Manifest


def ensure_registry(spark: SparkSession, table: str) -> None:
    """The registry table and its database, created if missing (a training run checks this
    before it trains, not after)."""
    ensure_table_and_database(
        spark,
        table,
        MODEL_REGISTRY_COLUMNS,
        comment=MODEL_REGISTRY_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def robustness_line(summary: dict | None) -> str | None:
    """The registry's one-line verdict of a manifest's robustness report (None: no report)."""
    if not summary:
        return None
    failed = summary.get("failed") or []
    line = f"{summary['verdict']}: {len(failed)} of {summary['assessed']} assessed tests failed"
    return line + (f" ({', '.join(failed)})" if failed else "")


def register_model(
    spark: SparkSession, table: str, manifest: Manifest, *, model_dir: str, published: bool = True
) -> None:
    """Append the model's row (creating the table the first time)."""
    ensure_registry(spark, table)
    selection = manifest.training.get("selection") or {}
    row = (
        manifest.model_version,
        dt.datetime.fromisoformat(manifest.created_at),
        model_dir,
        manifest.backbone,
        manifest.training.get("method"),
        manifest.training_table,
        manifest.training_table_version,
        manifest.training.get("parent_model"),
        str(manifest.calibration.get("method", "platt")),
        {k: float(v) for k, v in manifest.metrics.items()},
        selection.get("verdict"),
        published,
        robustness_line(manifest.training.get("robustness")),
        manifest.quantization.get("parent_version"),
    )
    append(spark.createDataFrame([row], schema(MODEL_REGISTRY_COLUMNS)), table)


def version_row(spark: SparkSession, table: str, version: str) -> tuple[str, bool] | None:
    """(directory, published) the registry recorded for ``version`` (its latest row); None if
    the registry or the version is unknown."""
    if not spark.catalog.tableExists(table):
        return None
    row = (
        spark.table(table)
        .where(F.col("model_version") == version)
        .orderBy(F.col("created_at").desc())
        .select("model_dir", "published")
        .first()
    )
    return None if row is None else (str(row["model_dir"]), row["published"] is not False)


def version_dir(spark: SparkSession, table: str, version: str) -> str | None:
    """The directory the registry recorded for ``version``; None if unknown."""
    found = version_row(spark, table, version)
    return None if found is None else found[0]


def model_dir_of(spark: SparkSession, table: str, link: Path, version: str | None) -> Path:
    """``version``'s directory from the registry, or the model's ``link`` when none is named."""
    if version is None:
        return link
    found = version_dir(spark, table, version)
    if found is None:
        raise ArtifactError(f"model version {version!r} is not in {table}")
    return Path(found)
