"""The training run: Delta table -> split -> fine-tune -> versioned, checksummed artifact."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from riskudf.config import TrainingConf
from riskudf.training.data import load_labelled, split_train_validation
from riskudf.training.finetune import TrainedModel, default_backbone_dir, fine_tune, publish_model

log = logging.getLogger(__name__)


def train_model(
    spark: SparkSession,
    conf: TrainingConf,
    *,
    train_table: str,
    text_col: str,
    label_col: str,
    output: Path,
    model_version: str | None = None,
) -> TrainedModel:
    """Fine-tune the configured backbone on a labelled Delta table and publish the model."""
    backbone = Path(conf.backbone) if conf.backbone else default_backbone_dir()
    data = load_labelled(
        spark,
        train_table,
        text_col=text_col,
        label_col=label_col,
        max_rows=conf.max_train_rows,
        seed=conf.seed,
    )
    train, validation = split_train_validation(
        data.frame, validation_fraction=conf.validation_fraction, seed=conf.seed
    )
    log.info(
        "training on %d rows, validating on %d (table %s version %s)",
        len(train),
        len(validation),
        data.table,
        data.version,
    )
    with tempfile.TemporaryDirectory(prefix="riskudf-train-") as work:
        tokenizer, model, metrics, calibration = fine_tune(
            train, validation, conf, backbone=backbone, work_dir=Path(work)
        )
    log.info("validation metrics: %s", metrics)
    return publish_model(
        tokenizer,
        model,
        output,
        backbone=str(conf.backbone or f"{backbone.parent.name} (packaged)"),
        conf=conf,
        training_table=data.table,
        training_table_version=data.version,
        metrics=metrics,
        calibration=calibration,
        model_version=model_version,
    )
