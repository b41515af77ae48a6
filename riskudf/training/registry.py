"""The model registry: one row per trained model in a Delta table (``risk.model_registry``)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from riskudf.model.artifact import Manifest
from riskudf.tables import RETENTION_PROPERTIES, Column_, append, ensure_table, schema

MODEL_REGISTRY_COLUMNS: tuple[Column_, ...] = (
    ("model_version", "STRING", True, "model_version of the manifest"),
    ("created_at", "TIMESTAMP", True, "when the model was published (UTC)"),
    ("model_dir", "STRING", True, "where the model directory was published"),
    ("backbone", "STRING", True, "the pretrained encoder it was fine-tuned from"),
    ("method", "STRING", False, "full or lora"),
    ("training_table", "STRING", True, "the Delta table it was trained on (name or path)"),
    ("training_table_version", "BIGINT", False, "that table's Delta version"),
    ("parent_model", "STRING", False, "the model version it replaced at model_dir, if any"),
    ("calibration", "STRING", True, "calibration method: none, temperature, platt, isotonic"),
    ("metrics", "MAP<STRING, DOUBLE>", True, "validation_* and test_* figures of the manifest"),
)
MODEL_REGISTRY_COMMENT = "one row per trained model, written when the model is published"


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
