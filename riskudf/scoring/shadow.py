"""Shadow scoring: each challenger of the champion's model scores the same documents in the same
run, into ``shadow_scores``, never into ``scored_portfolio``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark import Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import ensure_table, latest_version, replace_where
from riskudf.lakehouse.schemas import (
    RETENTION_PROPERTIES,
    SHADOW_SCORES_COLUMNS,
    SHADOW_SCORES_COMMENT,
)
from riskudf.model import aliases
from riskudf.model.artifact import (
    ArtifactError,
    artifact_key,
    load_artifact_bytes,
    require_pd_model,
)
from riskudf.model.features import feature_spec_of
from riskudf.safe_logging import safe_message

if TYPE_CHECKING:
    from riskudf.scoring.pipeline import Documents, Model

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Challenger:
    model_name: str
    alias: str
    model: Model


def challengers(spark: SparkSession, conf: RiskConf, champion: Model) -> list[Challenger]:
    """The champion's model's other aliases, each a different version, verified; none when
    scoring.model is a plain directory."""
    from riskudf.scoring.pipeline import Model

    parsed = aliases.parse_reference(conf.scoring.model)
    if parsed is None or Path(conf.scoring.model).exists():
        return []
    name, alias = parsed
    found = []
    current = aliases.current(spark, conf.tables.qualified("model_aliases"), name)
    for other, row in sorted(current.items()):
        if other == alias or row.model_version == champion.manifest.model_version:
            continue
        try:  # a bad challenger never stops the champion's run
            if row.model_dir is None:
                raise ArtifactError("no directory recorded")
            manifest, files = load_artifact_bytes(Path(row.model_dir))
            if manifest.model_version != row.model_version:
                raise ArtifactError(f"{row.model_dir} holds {manifest.model_version}")
            require_pd_model(manifest)
            spec = feature_spec_of(manifest.features)
        except Exception as exc:
            log.error(
                "%s@%s (%s) not shadow-scored: %s",
                name,
                other,
                row.model_version,
                safe_message(exc),
            )
            continue
        model = Model(manifest, files, artifact_key(files), spec, Path(row.model_dir))
        found.append(Challenger(name, other, model))
    return found


def ensure_shadow_table(spark: SparkSession, conf: RiskConf) -> None:
    ensure_table(
        spark,
        conf.tables.qualified("shadow_scores"),
        SHADOW_SCORES_COLUMNS,
        partitioned_by="as_of_date",
        comment=SHADOW_SCORES_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def shadow_rows(
    spark: SparkSession,
    conf: RiskConf,
    documents: Documents,
    challenger: Challenger,
    *,
    run_id: str,
    as_of: dt.date,
    partitions: int,
    artifact: Broadcast[dict[str, bytes]],
) -> DataFrame:
    """The challenger's PDs, grades and decisions of the run's scorable documents (``artifact``:
    its files, broadcast)."""
    from riskudf.scoring.pipeline import score_and_grade, with_feature_columns

    model = challenger.model
    scorable = with_feature_columns(documents.scorable, documents.usable, model.spec)
    quiet = conf.model_copy(update={"reasons": conf.reasons.model_copy(update={"enabled": False})})
    scored = score_and_grade(
        scorable,
        quiet,
        artifact,
        model.manifest,
        model.key,
        partitions,
        run_id=run_id,
    ).where(F.col("pd").isNotNull())  # what the champion's run would quarantine
    segments = documents.usable.select("obligor_id", "segment")
    return scored.join(segments, "obligor_id", "left").select(
        "obligor_id",
        F.lit(as_of).alias("as_of_date"),
        F.lit(challenger.model_name).alias("model_name"),
        F.lit(challenger.alias).alias("alias"),
        F.lit(model.manifest.model_version).alias("model_version"),
        "pd",
        "grade",
        "decision",
        "segment",
        F.lit(run_id).alias("run_id"),
    )


def publish_shadow(
    spark: SparkSession,
    conf: RiskConf,
    documents: Documents,
    found: list[Challenger],
    *,
    run_id: str,
    as_of: dt.date,
    committed: dict[str, int],
    lease: leases.Hold,
) -> int:
    """Score each challenger (one that fails is logged and left out), then replace the date's
    shadow rows with theirs in one commit, under the run's lease (the version before goes into
    ``committed``, so that a failed run puts the date back). Returns the rows written."""
    table = conf.tables.qualified("shadow_scores")
    ensure_shadow_table(spark, conf)
    partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
    frames: list[DataFrame] = []
    broadcasts = []
    try:
        for challenger in found:
            artifact = spark.sparkContext.broadcast(challenger.model.files)
            broadcasts.append(artifact)
            try:
                rows = shadow_rows(
                    spark,
                    conf,
                    documents,
                    challenger,
                    run_id=run_id,
                    as_of=as_of,
                    partitions=partitions,
                    artifact=artifact,
                ).persist(StorageLevel.MEMORY_AND_DISK)
                rows.count()
            except Exception as exc:
                log.error(
                    "run %s: %s@%s not shadow-scored (%s)",
                    run_id,
                    challenger.model_name,
                    challenger.alias,
                    type(exc).__name__,
                )
                continue
            frames.append(rows)
        if not frames:
            return 0
        union = frames[0]
        for frame in frames[1:]:
            union = union.unionByName(frame)
        lease.check()
        committed[table] = latest_version(spark, table)
        replace_where(union, table, F.col("as_of_date") == F.lit(as_of))
        written = union.count()
    finally:
        for frame in frames:
            frame.unpersist()
        for artifact in broadcasts:
            artifact.destroy()
    log.info("run %s: %d shadow scores of %d challengers", run_id, written, len(frames))
    return written
