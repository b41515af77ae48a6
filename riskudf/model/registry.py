"""The model registry: one row per trained model in a Delta table (``risk.model_registry``)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from riskudf.lakehouse.delta import append, ensure_table, schema
from riskudf.lakehouse.schemas import (
    MODEL_REGISTRY_COLUMNS,
    MODEL_REGISTRY_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.model.artifact import Manifest


def register_model(spark: SparkSession, table: str, manifest: Manifest, *, model_dir: str) -> None:
    """Append the model's row (creating the table the first time)."""
    ensure_table(
        spark,
        table,
        MODEL_REGISTRY_COLUMNS,
        comment=MODEL_REGISTRY_COMMENT,
        properties=RETENTION_PROPERTIES,
    )
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
    )
    append(spark.createDataFrame([row], schema(MODEL_REGISTRY_COLUMNS)), table)
