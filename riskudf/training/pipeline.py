"""The training run: Delta table -> split -> fine-tune -> calibrate -> evaluate -> versioned,
checksummed artifact with a model card -> a row in the model registry."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from riskudf.config import GradingConf, RedactionConf, TrainingConf
from riskudf.documents.redact import rules_record
from riskudf.model.artifact import ArtifactError, read_manifest
from riskudf.model.registry import register_model
from riskudf.monitoring.baseline import build_baseline
from riskudf.scoring.grading import decisions_of, grades_of
from riskudf.training.card import model_card
from riskudf.training.data import (
    Splits,
    TrainingData,
    load_labelled,
    split_by_time,
    split_stratified,
)
from riskudf.training.distributed import fine_tune_distributed
from riskudf.training.finetune import (
    Assessment,
    FineTuned,
    TrainedModel,
    assess_grades,
    calibrate_and_evaluate,
    default_backbone_dir,
    fine_tune,
    publish_model,
)
from riskudf.training.tfidf import tfidf_benchmark

log = logging.getLogger(__name__)


def split_data(frame: pd.DataFrame, conf: TrainingConf) -> Splits:
    """The configured split: stratified and seeded, or by time on the date column."""
    if conf.data.split == "time":
        assert conf.data.date_col is not None  # checked by the config
        return split_by_time(
            frame,
            date_col=conf.data.date_col,
            validation_fraction=conf.validation_fraction,
            test_fraction=conf.test_fraction,
        )
    return split_stratified(
        frame,
        validation_fraction=conf.validation_fraction,
        test_fraction=conf.test_fraction,
        seed=conf.seed,
    )


def load_and_split(
    spark: SparkSession,
    conf: TrainingConf,
    *,
    keep: tuple[str, ...] = (),
    redaction: RedactionConf | None = None,
) -> tuple[TrainingData, Splits]:
    """The configured training table, read at its current version, and its split."""
    data_conf = conf.data
    data = load_labelled(
        spark,
        data_conf.table,
        text_col=data_conf.text_col,
        text_from=data_conf.text_from,
        label_col=data_conf.label_col,
        id_col=data_conf.id_col,
        date_col=data_conf.date_col,
        classes=conf.grade_classes if conf.target == "grade" else (),
        max_rows=conf.max_train_rows,
        seed=conf.seed,
        keep=[c for c in (*keep, data_conf.segment_col) if c],
        numeric=data_conf.features.numeric,
        categorical=data_conf.features.categorical,
        redaction=redaction if redaction is not None else RedactionConf(),
    )
    splits = split_data(data.frame, conf)
    log.info(
        "split %s: train %d, validation %d, test %d rows (table %s version %s)",
        data_conf.split,
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        data.table,
        data.version,
    )
    return data, splits


def benchmark_only(
    spark: SparkSession, conf: TrainingConf, redaction: RedactionConf | None = None
) -> dict[str, float]:
    """TF-IDF + logistic regression on the split the transformer would get (``make baseline``)."""
    _, splits = load_and_split(spark, conf, redaction=redaction)
    return tfidf_benchmark(splits, seed=conf.seed, balanced=conf.imbalance != "none")


def previous_version(output: Path) -> str | None:
    """The model version published at ``output`` now (the one the new model replaces)."""
    try:
        return read_manifest(output).model_version
    except ArtifactError:
        return None


def _assess_pd_model(
    tuned: FineTuned,
    splits: Splits,
    conf: TrainingConf,
    data: TrainingData,
    *,
    grading: GradingConf | None,
    slice_columns: tuple[str, ...],
) -> tuple[Assessment, dict[str, Any]]:
    """Calibration and test figures of a PD model, and its monitoring baseline."""
    thresholds = None
    if grading is not None:
        thresholds = {"review": grading.review_from_pd, "decline": grading.decline_from_pd}
    assessment = calibrate_and_evaluate(
        tuned.tokenizer,
        tuned.model,
        splits,
        conf,
        thresholds=thresholds,
        segment_col=conf.data.segment_col,
        features=tuned.features,
    )
    metrics = assessment.metrics
    log.info(
        "test AUC %.4f, Brier %.4f -> %.4f, ECE %.4f -> %.4f (calibration %s)",
        metrics["test_auc"],
        metrics["test_raw_brier"],
        metrics["test_brier"],
        metrics["test_raw_ece"],
        metrics["test_ece"],
        conf.calibration,
    )
    reference = assessment.validation_scores.reset_index(drop=True)
    if grading is not None:
        pds = reference["pd"].to_numpy()
        reference = reference.assign(
            grade=grades_of(pds, grading), decision=decisions_of(pds, grading)
        )
    kept = [c for c in slice_columns if c in splits.validation]
    for column in kept:
        reference[column] = splits.validation[column].to_numpy()
    baseline = build_baseline(
        reference,
        source=f"validation split of {data.table} version {data.version}",
        slice_columns=tuple(kept),
    )
    return assessment, baseline


# Long on purpose: the training steps in order, each one a named call.
def train_model(
    spark: SparkSession,
    conf: TrainingConf,
    *,
    output: Path,
    model_version: str | None = None,
    grading: GradingConf | None = None,
    slice_columns: tuple[str, ...] = (),
    registry_table: str | None = None,
    redaction: RedactionConf | None = None,
) -> TrainedModel:
    """Fine-tune the configured backbone on the configured Delta table and publish the model.

    The model carries a monitoring baseline of its validation split: PDs, document statistics,
    grades and decisions on ``grading`` when given, sliced by the ``slice_columns`` that the
    training table has. Test metrics use grading's review and decline thresholds.
    """
    backbone = Path(conf.backbone) if conf.backbone else default_backbone_dir()
    redaction = redaction if redaction is not None else RedactionConf()
    data, splits = load_and_split(spark, conf, keep=slice_columns, redaction=redaction)
    with tempfile.TemporaryDirectory(prefix="riskudf-train-") as work:
        if conf.processes:
            tuned = fine_tune_distributed(
                spark, splits.train, splits.validation, conf, backbone=backbone, work_dir=Path(work)
            )
        else:
            tuned = fine_tune(
                splits.train, splits.validation, conf, backbone=backbone, work_dir=Path(work)
            )
    benchmark = tfidf_benchmark(splits, seed=conf.seed, balanced=conf.imbalance != "none")
    if conf.target == "grade":
        assessment = assess_grades(
            tuned.tokenizer, tuned.model, splits, conf, features=tuned.features
        )
        metrics = {**assessment.metrics, **benchmark}
        log.info(
            "test macro AUC %.4f (TF-IDF + logistic regression %.4f), accuracy %.4f, "
            "quadratic kappa %.4f",
            metrics["test_macro_auc"],
            metrics["tfidf_test_macro_auc"],
            metrics["test_accuracy"],
            metrics["test_quadratic_kappa"],
        )
        baseline = None  # monitoring's baseline describes PDs; a grade model has none
    else:
        assessment, baseline = _assess_pd_model(
            tuned, splits, conf, data, grading=grading, slice_columns=slice_columns
        )
        metrics = {**assessment.metrics, **benchmark}
    training = {
        "method": conf.method,
        "trainable_parameters": tuned.trainable_parameters,
        "total_parameters": tuned.total_parameters,
        "target": conf.target,
        "epochs_run": tuned.epochs_run,
        "processes": tuned.world_size,
        "seconds_per_epoch": tuned.seconds_per_epoch,
        "history": tuned.history,
        "imbalance": conf.imbalance,
        "split": conf.data.split,
        "parent_model": previous_version(output),
        "conf": conf.model_dump(mode="json"),
        "redactions": data.redactions,
    }
    trained = publish_model(
        tuned.tokenizer,
        tuned.model,
        output,
        backbone=str(conf.backbone or f"{backbone.parent.name} (packaged)"),
        conf=conf,
        training_table=data.table,
        training_table_version=data.version,
        metrics=metrics,
        calibration=assessment.calibration,
        model_version=model_version,
        baseline=baseline,
        training=training,
        model_card=model_card,
        features=tuned.features,
        redaction=rules_record(redaction),
    )
    if registry_table:
        register_model(spark, registry_table, trained.manifest, model_dir=str(trained.output))
    return trained
