"""The training run: Delta table -> split -> fine-tune -> versioned, checksummed artifact."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from riskudf.config import GradingConf, TrainingConf
from riskudf.grading import decisions_of, grades_of
from riskudf.monitoring.baseline import build_baseline
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
    grading: GradingConf | None = None,
    slice_columns: tuple[str, ...] = (),
) -> TrainedModel:
    """Fine-tune the configured backbone on a labelled Delta table and publish the model.

    The model carries a monitoring baseline of its validation split: PDs, document statistics,
    grades and decisions on ``grading`` when given, sliced by the ``slice_columns`` that the
    training table has.
    """
    backbone = Path(conf.backbone) if conf.backbone else default_backbone_dir()
    data = load_labelled(
        spark,
        train_table,
        text_col=text_col,
        label_col=label_col,
        max_rows=conf.max_train_rows,
        seed=conf.seed,
        keep=slice_columns,
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
        tokenizer, model, metrics, calibration, scores = fine_tune(
            train, validation, conf, backbone=backbone, work_dir=Path(work)
        )
    log.info("validation metrics: %s", metrics)
    reference = scores.reset_index(drop=True)
    if grading is not None:
        pds = reference["pd"].to_numpy()
        reference = reference.assign(
            grade=grades_of(pds, grading), decision=decisions_of(pds, grading)
        )
    kept = [c for c in slice_columns if c in validation]
    for column in kept:
        reference[column] = validation[column].to_numpy()
    baseline = build_baseline(
        reference,
        source=f"validation split of {data.table} version {data.version}",
        slice_columns=tuple(kept),
    )
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
        baseline=baseline,
    )
