"""The gate's evidence from matured cohorts: labelled documents assembled as of each cohort date
by the training-set builder's own code, scored in Spark by the candidate (and by the champion,
for the migration between them). Only per-grade counts come back to the driver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.documents.redact import check_model_rules
from riskudf.lakehouse.delta import InputError, read_version
from riskudf.model.artifact import (
    ArtifactError,
    artifact_key,
    load_artifact_bytes,
    require_pd_model,
)
from riskudf.model.features import feature_spec_of
from riskudf.model.registry import version_row
from riskudf.monitoring.run import add_months
from riskudf.scoring.grading import grade_expr
from riskudf.scoring.pipeline import Model, set_arrow_batches
from riskudf.scoring.scorer import ScoringOptions
from riskudf.scoring.udf import make_pd_udf
from riskudf.training.dataset import Knowledge, cohort_rows
from riskudf.training.evaluate import GradeRow


class EvidenceError(InputError):
    """No matured cohort to test on, or a version the registry does not know."""


def load_version(
    spark: SparkSession, conf: RiskConf, version: str, *, allow_unpublished: bool = False
) -> Model:
    """A registered version's artifact, verified, from its own directory, with the checks the
    nightly run makes (a PD model, trained under this conf's redaction rules): the gate never
    promotes a version that scoring would refuse. A version set aside (the benchmark won) only
    with ``allow_unpublished``."""
    registry = conf.tables.qualified("model_registry")
    found = version_row(spark, registry, version)
    if found is None:
        raise EvidenceError(f"model version {version!r} is not in {registry}")
    directory, published = found
    if not published and not allow_unpublished:
        raise EvidenceError(
            f"model version {version!r} was set aside (the benchmark beat it); promoting it "
            "takes --override-reason"
        )
    manifest, files = load_artifact_bytes(Path(directory))
    if manifest.model_version != version:
        raise ArtifactError(f"{directory} holds {manifest.model_version}, not {version}")
    require_pd_model(manifest)
    check_model_rules(manifest, conf.redaction)
    spec = feature_spec_of(manifest.features)
    return Model(manifest, files, artifact_key(files), spec, Path(directory))


def training_dates(spark: SparkSession, model: Model) -> set[dt.date]:
    """Observation dates of the model's training table at its recorded version (empty when the
    table has no observation_date column or is gone)."""
    table, version = model.manifest.training_table, model.manifest.training_table_version
    if version is None or not spark.catalog.tableExists(table):
        return set()
    frame = read_version(spark, table, version, {})
    if "observation_date" not in frame.columns:
        return set()
    return {r[0] for r in frame.select("observation_date").distinct().collect()}


def matured_dates(spark: SparkSession, conf: RiskConf, *, today: dt.date) -> list[dt.date]:
    """Observation dates of the outcomes table whose horizon has passed by ``today``."""
    outcomes = conf.tables.qualified("outcomes")
    if not spark.catalog.tableExists(outcomes):
        return []
    horizon = conf.monitoring.outcome_horizon_months
    dates = [r[0] for r in spark.table(outcomes).select("observation_date").distinct().collect()]
    return sorted(d for d in dates if add_months(d, horizon) <= today)


def choose_cohorts(
    requested: Sequence[dt.date], matured: Sequence[dt.date], in_training: set[dt.date]
) -> list[dt.date]:
    """The cohorts to test on: ``requested`` (each matured and out of the training set), or by
    default the latest matured one that the model did not train on."""
    if requested:
        for day in requested:
            if day not in matured:
                raise EvidenceError(f"cohort {day}: its outcomes have not matured (or none exist)")
            if day in in_training:
                raise EvidenceError(f"cohort {day} is in the model's training set: in-sample")
        return sorted(set(requested))
    unseen = [d for d in matured if d not in in_training]
    if not unseen:
        raise EvidenceError(
            f"no matured cohort outside the model's training set (matured: "
            f"{', '.join(map(str, matured)) or 'none'})"
        )
    return [unseen[-1]]


def cohort_documents(
    spark: SparkSession,
    conf: RiskConf,
    dates: Sequence[dt.date],
    *,
    knowledge: Knowledge,
    today: dt.date,
) -> DataFrame:
    """Labelled documents of each cohort, as the training-set builder assembles them."""
    frames = [cohort_rows(spark, conf, day, knowledge=knowledge, today=today).rows for day in dates]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def score_cohorts(documents: DataFrame, conf: RiskConf, model: Model) -> DataFrame:
    """obligor_id, observation_date, label, pd and grade of each labelled document."""
    spark = documents.sparkSession
    options = ScoringOptions(
        max_length=model.manifest.max_length,
        token_budget=conf.scoring.token_budget,
        precision=conf.scoring.precision,
    )
    features = model.spec.columns if model.spec is not None else ()
    missing = [c for c in features if c not in documents.columns]
    if missing:
        raise EvidenceError(f"the cohort rows lack the model's feature columns {missing}")
    set_arrow_batches(spark, conf.scoring)
    udf = make_pd_udf(
        spark.sparkContext.broadcast(model.files),
        key=model.key,
        options=options,
        with_features=bool(features),
    )
    inputs = [F.col("text")] + ([F.struct(*features)] if features else [])
    partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
    label = conf.training.data.label_col
    scored = documents.repartition(partitions, "obligor_id").select(
        "obligor_id",
        "observation_date",
        F.col(label).cast("int").alias("label"),
        udf(*inputs)["pd"].alias("pd"),
    )
    # A document the model cannot score (null PD) has no grade: left out of every count.
    graded = scored.withColumn("grade", grade_expr(F.col("pd"), conf.grading))
    return graded.where(F.col("grade").isNotNull())


def grade_rows(scored: DataFrame, scale: Sequence[str]) -> list[GradeRow]:
    """Per grade of ``scale`` (in its order): obligors, defaults, sum of PDs."""
    found = {
        r["grade"]: r
        for r in scored.groupBy("grade")
        .agg(F.count("*").alias("n"), F.sum("label").alias("d"), F.sum("pd").alias("s"))
        .collect()
    }
    return [
        GradeRow(g, int(found[g]["n"]), int(found[g]["d"]), float(found[g]["s"]))
        if g in found
        else GradeRow(g, 0, 0, 0.0)
        for g in scale
    ]


def migration_matrix(before: DataFrame, after: DataFrame, scale: Sequence[str]) -> np.ndarray:
    """Counts of obligors from ``before``'s grade (rows) to ``after``'s (columns)."""
    keys = ["obligor_id", "observation_date"]
    pairs = (
        before.select(*keys, F.col("grade").alias("g0"))
        .join(after.select(*keys, F.col("grade").alias("g1")), keys)
        .groupBy("g0", "g1")
        .count()
        .collect()
    )
    index = {g: i for i, g in enumerate(scale)}
    matrix = np.zeros((len(scale), len(scale)))
    for row in pairs:
        matrix[index[row["g0"]], index[row["g1"]]] += row["count"]
    return matrix
