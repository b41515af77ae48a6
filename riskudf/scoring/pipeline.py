"""The nightly scoring pipeline: inputs -> documents -> PD UDF -> grades -> Delta + run log.

A run holds its as-of date (lakehouse.leases), scores what can be scored, sets the rest aside in the
quarantine table with a reason, checks that every portfolio obligor is in exactly one of the two,
and only then commits: quarantine, scores, and the run log row last. A failure raised on the
driver after a commit puts back this date's rows of the committed tables (undo_date).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from delta.tables import DeltaTable
from pyspark import Accumulator, Broadcast, StorageLevel
from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StructType

from riskudf import failpoints
from riskudf.config import GpuConf, RiskConf, ScoringConf
from riskudf.documents import quarantine
from riskudf.documents.assemble import assemble_documents
from riskudf.documents.redact import check_model_rules, redact_documents
from riskudf.failpoints import Failpoint
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import (
    InputError,
    SchemaError,
    append,
    ensure_database,
    ensure_table,
    latest_version,
    read_version,
    replace_where,
    schema,
    version_at,
)
from riskudf.lakehouse.schemas import (
    CREDIT_REPORT_COLUMNS,
    FILING_COLUMNS,
    PORTFOLIO_COLUMNS,
    RETENTION_PROPERTIES,
    SCORE_RUNS_COLUMNS,
    SCORE_RUNS_COMMENT,
    SCORED_HISTORY_COMMENT,
    SCORED_PORTFOLIO_COLUMNS,
    SCORED_PORTFOLIO_COMMENT,
    SCORED_PORTFOLIO_PROPERTIES,
    SCORING_QUARANTINE_COLUMNS,
    SCORING_QUARANTINE_COMMENT,
    history_properties,
)
from riskudf.model.aliases import locate
from riskudf.model.artifact import (
    ArtifactError,
    Manifest,
    artifact_key,
    load_artifact_bytes,
    require_pd_model,
)
from riskudf.model.features import FeatureSpec, feature_spec_of
from riskudf.monitoring.phase import run_monitoring
from riskudf.monitoring.run import MonitorSummary
from riskudf.scoring import incremental, lineage
from riskudf.scoring.grading import add_grade_and_decision, decision_expr
from riskudf.scoring.progress import Progress
from riskudf.scoring.scorer import ExplainOptions, ScoringOptions
from riskudf.scoring.shadow import Challenger, challengers, publish_shadow
from riskudf.scoring.udf import REASONS_TYPE, SCORE_TYPE, make_pd_mapper, make_pd_udf
from riskudf.scoring.worker import WorkerStats, loads_by_executor, worker_rows

log = logging.getLogger(__name__)

Mode = Literal["full", "incremental"]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    as_of: dt.date
    status: str
    rows_in: int
    rows_scored: int
    model_version: str
    input_versions: dict[str, int]
    duration_s: float
    rows_quarantined: int = 0
    records_quarantined: int = 0
    grade_counts: dict[str, int] = field(default_factory=dict)
    reason_counts: dict[str, int] = field(default_factory=dict)
    monitoring: MonitorSummary | None = None
    mode: str = "full"
    rows_carried_forward: int = 0
    carried_from_run_id: str | None = None
    monitoring_status: str | None = None  # success, failed; None: monitoring is off
    scoring_workers: tuple[dict[str, Any], ...] = ()  # see worker.WorkerStats
    knowledge_time: dt.datetime | None = None  # inputs as known then (UTC)
    late_records: dict[str, int] = field(default_factory=dict)  # written after knowledge_time
    environment: dict[str, str] = field(default_factory=dict)  # see lineage.environment
    reproduction: dict[str, Any] | None = None  # mode reproduce, see reproduce.Reproduction
    redactions: dict[str, int] = field(default_factory=dict)  # per kind, see documents.redact


class ReconciliationError(RuntimeError):
    """Some portfolio obligor is neither scored nor quarantined, or is in both or twice."""


@dataclass(frozen=True)
class Reconciliation:
    obligors: int  # distinct non-blank obligor ids, plus one per blank-key row
    rows: int  # portfolio rows
    scored: int
    quarantined: int
    missing: int
    repeated: int
    unknown: int
    examples: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return (
            self.missing == self.repeated == self.unknown == 0
            and self.scored + self.quarantined == self.obligors
        )


def ensure_output_tables(spark: SparkSession, conf: RiskConf) -> None:
    tables = conf.tables
    ensure_database(spark, tables.database)
    ensure_table(
        spark,
        tables.qualified("scored_portfolio"),
        SCORED_PORTFOLIO_COLUMNS,
        partitioned_by="as_of_date",
        comment=SCORED_PORTFOLIO_COMMENT,
        properties=SCORED_PORTFOLIO_PROPERTIES,
    )
    ensure_table(
        spark,
        tables.qualified("scoring_quarantine"),
        SCORING_QUARANTINE_COLUMNS,
        partitioned_by="as_of_date",
        comment=SCORING_QUARANTINE_COMMENT,
        properties=RETENTION_PROPERTIES,
    )
    ensure_table(
        spark,
        tables.qualified("scored_history"),
        SCORED_PORTFOLIO_COLUMNS,
        partitioned_by="as_of_date",
        comment=SCORED_HISTORY_COMMENT,
        properties=history_properties(tables.retention_days),
    )
    ensure_table(
        spark,
        tables.qualified("score_runs"),
        SCORE_RUNS_COLUMNS,
        comment=SCORE_RUNS_COMMENT,
        properties=history_properties(tables.retention_days),
    )
    leases.ensure_tables(
        spark,
        locks=tables.qualified("scoring_locks"),
        releases=tables.qualified("scoring_lock_releases"),
    )


def scoring_profile(gpu: GpuConf) -> ResourceProfile:
    """The scoring stage's task resources: ``task_gpus`` GPUs and ``task_cpus`` cores a task."""
    tasks = TaskResourceRequests().cpus(gpu.task_cpus).resource("gpu", gpu.task_gpus)
    return ResourceProfileBuilder().require(tasks).build


def check_feature_columns(portfolio: DataFrame, table: str, spec: FeatureSpec) -> None:
    """The portfolio holds every feature column of the model, numerics with a numeric type."""
    types = {f.name: f.dataType for f in portfolio.schema.fields}
    missing = [c for c in spec.columns if c not in types]
    mistyped = [c for c in spec.numeric if c in types and not isinstance(types[c], NumericType)]
    problems = [f"missing feature columns {missing}"] if missing else []
    problems += [f"numeric feature columns {mistyped} are not numeric"] if mistyped else []
    if problems:
        raise SchemaError(f"table {table}: {'; '.join(problems)} (the model's features)")


def with_feature_columns(
    documents: DataFrame, portfolio: DataFrame, spec: FeatureSpec | None
) -> DataFrame:
    """Documents with the model's feature columns from the portfolio (one row per obligor),
    numerics as double and categoricals as string; unchanged for a text-only model. A document
    column of the same name (segment, which assembly carries) is replaced by the feature's."""
    if spec is None:
        return documents
    columns = [F.col(c).cast("double").alias(c) for c in spec.numeric] + [
        F.col(c).cast("string").alias(c) for c in spec.categorical
    ]
    own = documents.drop(*[c for c in spec.columns if c in documents.columns])
    return own.join(portfolio.select("obligor_id", *columns), "obligor_id", "left")


# Long on purpose: builds one Spark plan: UDF or mapper, grades and decisions.
def score_and_grade(
    documents: DataFrame,
    conf: RiskConf,
    artifact_broadcast: Broadcast[dict[str, bytes]],
    manifest: Manifest,
    model_key: str,
    partitions: int,
    failpoint: Failpoint | None = None,
    *,
    run_id: str,
    previous: DataFrame | None = None,
    stats: Accumulator[dict[str, dict[str, Any]]] | None = None,
) -> DataFrame:
    """Apply the PD UDF and the master scale to assembled documents (with their fingerprint).

    With ``previous`` (an earlier run's rows, see incremental.previous_rows) only documents
    whose fingerprint changed go through the model; the others carry its outputs forward.
    Grades and decisions are computed for every row here, carried or not. The window
    (max_length) is the one the model was trained with, from its manifest. A model with
    features reads the manifest's feature columns of ``documents`` (see with_feature_columns).

    Reason codes (conf ``reasons``) are computed in the same pass, by the UDF, for the rows
    whose decision is in ``reasons.decisions``; other rows get null. A carried row keeps its
    reasons; one that is flagged now but has none is scored again.
    """
    gpu = conf.scoring.gpu
    local = (documents.sparkSession.sparkContext.master or "").startswith("local")
    reasons = conf.reasons
    options = ScoringOptions(
        max_length=manifest.max_length,
        token_budget=conf.scoring.token_budget,
        precision=conf.scoring.precision,
        failpoint=failpoint,
        local_gpu=gpu is not None and local,
        explain=ExplainOptions(reasons, conf.grading) if reasons.enabled else None,
    )
    flagged = decision_expr(F.col("pd"), conf.grading).isin(list(reasons.decisions))
    to_score, carried = incremental.split_by_fingerprint(
        documents,
        previous,
        lacks_reasons=flagged & F.col("reasons").isNull() if reasons.enabled else None,
    )
    spec = feature_spec_of(manifest.features)
    features = spec.columns if spec is not None else ()
    keep = ["obligor_id", "fingerprint", "n_filings", "report_age_days", "redactions"]
    if gpu is None:
        pd_udf = make_pd_udf(
            artifact_broadcast,
            key=model_key,
            options=options,
            with_features=bool(features),
            stats=stats,
        )
        inputs = [F.col("document")] + ([F.struct(*features)] if features else [])
        scored = to_score.repartition(partitions, "obligor_id").select(
            *keep, pd_udf(*inputs).alias("score")
        )
        outputs = [f"score.{name}" for name in incremental.MODEL_OUTPUTS]
    else:
        # Only this stage asks for a GPU per task (stage-level scheduling, see docs/operations.md):
        # reading and assembly keep one task per core. Local mode has no resource scheduling: one
        # task scores on the one GPU.
        mapper = make_pd_mapper(
            artifact_broadcast,
            key=model_key,
            options=options,
            keep=keep,
            features=features,
            stats=stats,
        )
        fields = [to_score.schema[name] for name in keep] + list(SCORE_TYPE.fields)
        scored = to_score.repartition(1 if local else partitions, "obligor_id").mapInPandas(
            mapper, StructType(fields), profile=None if local else scoring_profile(gpu)
        )
        # A stage takes the profile of every RDD in it: without this shuffle, the stages that
        # read the scores (checks, commits) would run one task per GPU as well.
        scored = scored.repartition("obligor_id")
        outputs = list(incremental.MODEL_OUTPUTS)
    scored = scored.select(
        *keep,
        *outputs,
        F.lit(False).alias("carried_forward"),
        F.lit(run_id).alias("scored_run_id"),
    )
    if carried is not None:
        scored = scored.unionByName(carried)
    graded = add_grade_and_decision(scored, conf.grading)
    explained = F.col("decision").isin(list(reasons.decisions)) if reasons.enabled else F.lit(False)
    return graded.withColumn(
        "reasons", F.when(explained, F.col("reasons")).otherwise(F.lit(None).cast(REASONS_TYPE))
    )


def reconcile(
    portfolio: DataFrame,
    scored: DataFrame,
    quarantined: DataFrame,
    *,
    counted: tuple[int, int] | None = None,
) -> Reconciliation:
    """Check that each portfolio obligor is in exactly one of ``scored`` and ``quarantined``.

    ``quarantined`` holds the obligor-level quarantine rows (source: the portfolio table).
    ``counted``: the rows of ``scored`` and ``quarantined``, when the caller has them. Only
    counts and up to five example ids reach the driver.
    """
    blank = F.col("obligor_id").isNull() | (F.trim(F.col("obligor_id")) == "")
    expected = portfolio.where(~blank).select("obligor_id").distinct().withColumn("_in", F.lit(1))
    outcomes = (
        scored.select("obligor_id")
        .unionByName(quarantined.where(~blank).select("obligor_id"))
        .groupBy("obligor_id")
        .agg(F.count(F.lit(1)).alias("_n"))
    )
    problems = (
        expected.join(outcomes, "obligor_id", "full_outer")
        .where(F.col("_in").isNull() | F.col("_n").isNull() | (F.col("_n") != 1))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        # One action: the problems' counts beside the portfolio's (rows, ids, blank keys).
        counts = (
            problems.agg(
                F.count(F.when(F.col("_n").isNull(), 1)).alias("missing"),
                F.count(F.when(F.col("_n") > 1, 1)).alias("repeated"),
                F.count(F.when(F.col("_in").isNull(), 1)).alias("unknown"),
            )
            .crossJoin(
                portfolio.agg(
                    F.count(F.lit(1)).alias("rows"),
                    F.count_distinct(F.when(~blank, F.col("obligor_id"))).alias("ids"),
                    F.count(F.when(blank, 1)).alias("blank"),
                )
            )
            .first()
        )
        assert counts is not None
        found = counts["missing"] + counts["repeated"] + counts["unknown"]
        examples = (
            tuple(r["obligor_id"] for r in problems.select("obligor_id").limit(5).collect())
            if found
            else ()
        )
    finally:
        problems.unpersist()
    n_scored, n_quarantined = counted or (scored.count(), quarantined.count())
    return Reconciliation(
        obligors=int(counts["ids"]) + int(counts["blank"]),
        rows=int(counts["rows"]),
        scored=n_scored,
        quarantined=n_quarantined,
        missing=int(counts["missing"]),
        repeated=int(counts["repeated"]),
        unknown=int(counts["unknown"]),
        examples=examples,
    )


def run_log_row(
    spark: SparkSession, result: RunResult, started: dt.datetime, error: str | None
) -> DataFrame:
    finished = dt.datetime.now(dt.UTC)
    row = (
        result.run_id,
        result.as_of,
        started,
        finished,
        result.status,
        result.rows_in,
        result.rows_scored,
        result.rows_quarantined,
        result.records_quarantined,
        result.model_version,
        result.input_versions,
        result.duration_s,
        error,
        None,  # alerts_fired: monitoring comes after publication, see monitor_runs
        result.mode,
        result.rows_carried_forward,
        result.carried_from_run_id,
        list(result.scoring_workers),
        result.knowledge_time,
        result.late_records,
        result.environment,
        result.reproduction,
        result.redactions,
    )
    return spark.createDataFrame([row], schema(SCORE_RUNS_COLUMNS))


def _with_run(rows: DataFrame, *, run_id: str, as_of: dt.date, at: dt.datetime) -> DataFrame:
    return rows.select(
        F.lit(run_id).alias("run_id"),
        F.lit(as_of).alias("as_of_date"),
        *quarantine.QUARANTINE_FIELDS,
        F.lit(at).alias("quarantined_at"),
    )


def business_date(now: dt.datetime, timezone: str) -> dt.date:
    """The calendar date at ``now`` (aware) in the lender's time zone (conf scoring.timezone)."""
    return now.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Inputs:
    """The input tables, each pinned at the version read; ``names`` by role."""

    names: dict[str, str]
    versions: dict[str, int]
    portfolio: DataFrame
    reports: DataFrame
    filings: DataFrame


@dataclass(frozen=True)
class Model:
    """The verified artifact: its bytes (shipped to executors), manifest, key and features."""

    manifest: Manifest
    files: dict[str, bytes]
    key: str
    spec: FeatureSpec | None
    path: Path  # the directory it was read from (a version's own, when named by an alias)


@dataclass(frozen=True)
class Documents:
    """What assembly left to score, and the quarantine rows it set aside."""

    usable: DataFrame  # one portfolio row per obligor
    scorable: DataFrame  # documents with features and fingerprint
    obligor_rows: DataFrame  # obligor-level quarantine rows (portfolio, documents)
    record_rows: DataFrame  # record-level quarantine rows (reports, filings)
    redaction_kinds: tuple[str, ...] = ()  # the order of scorable's redactions counts


@dataclass(frozen=True)
class Settled:
    """The run's rows, reconciled: what the commit writes and what the run log counts."""

    output: DataFrame
    set_aside: DataFrame  # read from cached frames: release() after the commit
    check: Reconciliation
    rows_in: int
    grade_counts: dict[str, int]
    reason_counts: dict[str, int]
    cached: tuple[DataFrame, ...] = ()

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


@dataclass(frozen=True)
class Tally:
    """The scoring results, counted in one Spark action."""

    rows: int
    carried: int  # rows carried forward from an earlier run
    scored: int  # rows with a PD
    grade_counts: dict[str, int]  # rows with a PD, per grade
    redactions: dict[str, int]  # per redaction kind


def tally(results: DataFrame, kinds: Sequence[str]) -> Tally:
    """Count ``results`` (columns pd, grade, carried_forward, and redactions when ``kinds``):
    one row per grade reaches the driver."""
    sums = [
        F.coalesce(F.sum(F.col("redactions")[i]), F.lit(0)).alias(f"k{i}")
        for i in range(len(kinds))
    ]
    groups = (
        results.groupBy(F.col("pd").isNotNull().alias("_scored"), "grade")
        .agg(
            F.count(F.lit(1)).alias("_rows"),
            F.count(F.when(F.col("carried_forward"), 1)).alias("_carried"),
            *sums,
        )
        .collect()
    )
    grades: dict[str, int] = {}
    for g in groups:
        if g["_scored"]:
            grades[g["grade"]] = grades.get(g["grade"], 0) + int(g["_rows"])
    return Tally(
        rows=sum(int(g["_rows"]) for g in groups),
        carried=sum(int(g["_carried"]) for g in groups),
        scored=sum(grades.values()),
        grade_counts=grades,
        redactions={kind: sum(int(g[f"k{i}"]) for g in groups) for i, kind in enumerate(kinds)},
    )


# Each input's role, required columns, record key and record date (None: not dated).
INPUT_TABLES: dict[str, tuple[dict[str, str], str, str | None]] = {
    "portfolio": (PORTFOLIO_COLUMNS, "obligor_id", None),
    "credit_reports": (CREDIT_REPORT_COLUMNS, "report_id", "report_date"),
    "filings": (FILING_COLUMNS, "filing_id", "filing_date"),
}


def read_inputs(
    spark: SparkSession,
    conf: RiskConf,
    *,
    knowledge_time: dt.datetime | None = None,
    versions: dict[str, int] | None = None,
) -> Inputs:
    """Phase 1: the input snapshot, checked. Each table is pinned at ``versions`` (by qualified
    name) when given, else at its last version committed at or before ``knowledge_time``, else
    at its current version."""
    names = {role: conf.tables.qualified(role) for role in INPUT_TABLES}
    pinned: dict[str, int] = {}
    frames: dict[str, DataFrame] = {}
    for role, (required, _, _) in INPUT_TABLES.items():
        name = names[role]
        if versions is not None:
            if name not in versions:
                raise InputError(f"no recorded version of table {name}")
            pinned[name] = int(versions[name])
        elif knowledge_time is not None:
            pinned[name] = version_at(spark, name, knowledge_time)
        else:
            pinned[name] = latest_version(spark, name)
        frames[role] = read_version(spark, name, pinned[name], required)
    if frames["portfolio"].limit(1).count() == 0:
        raise InputError(f"table {names['portfolio']} is empty: nothing to score")
    return Inputs(names, pinned, frames["portfolio"], frames["credit_reports"], frames["filings"])


def late_records(spark: SparkSession, inputs: Inputs, *, as_of: dt.date) -> dict[str, int]:
    """Per input table: records dated on or before ``as_of`` (portfolio: obligors) that its
    current version holds and the pinned version does not; written after the knowledge time,
    so left out of the run. A table read at its current version has none (no Spark job)."""
    late: dict[str, int] = {}
    pinned = {
        "portfolio": inputs.portfolio,
        "credit_reports": inputs.reports,
        "filings": inputs.filings,
    }
    for role, (_, key, date_col) in INPUT_TABLES.items():
        name = inputs.names[role]
        current = latest_version(spark, name)
        if current == inputs.versions[name]:
            late[name] = 0
            continue
        now = read_version(spark, name, current, {})
        if date_col is not None:
            now = now.where(F.col(date_col) <= F.lit(as_of))
        known = pinned[role].select(key).where(F.col(key).isNotNull())
        late[name] = (
            now.select(key).where(F.col(key).isNotNull()).distinct().join(known, key, "left_anti")
        ).count()
    return late


def load_model(
    spark: SparkSession, conf: RiskConf, inputs: Inputs, *, version: str | None = None
) -> Model:
    """The artifact of ``scoring.model`` (an alias resolved once, here), or of ``version`` when
    the registry knows it; verified. A model with features needs them in the portfolio."""
    where = locate(
        spark,
        conf.scoring.model,
        aliases_table=conf.tables.qualified("model_aliases"),
        registry_table=conf.tables.qualified("model_registry"),
        version=version,
    )
    # The bytes verified here are the bytes shipped to the executors, which verify them again.
    manifest, files = load_artifact_bytes(where.path)
    if where.version is not None and manifest.model_version != where.version:
        raise ArtifactError(
            f"{where.reference} names model {where.version}, but {where.path} holds "
            f"{manifest.model_version}"
        )
    require_pd_model(manifest)
    check_model_rules(manifest, conf.redaction)
    spec = feature_spec_of(manifest.features)
    if spec is not None:
        check_feature_columns(inputs.portfolio, inputs.names["portfolio"], spec)
    return Model(manifest, files, artifact_key(files), spec, where.path)


def previous_scores(
    spark: SparkSession, conf: RiskConf, *, as_of: dt.date, mode: Mode
) -> tuple[str | None, DataFrame | None]:
    """Incremental mode: the run whose outputs may be carried forward, and its rows."""
    if mode != "incremental":
        return None, None
    scored_table = conf.tables.qualified("scored_portfolio")
    scored_version = latest_version(spark, scored_table)
    found = incremental.previous_run(
        spark,
        scored_table=scored_table,
        scored_version=scored_version,
        runs_table=conf.tables.qualified("score_runs"),
        as_of=as_of,
    )
    if found is None:
        return None, None
    rows = incremental.previous_rows(
        spark, scored_table=scored_table, scored_version=scored_version, run=found
    )
    return found[0], rows


def assemble_redacted(
    inputs: Inputs, conf: RiskConf, *, as_of: dt.date, today: dt.date
) -> Documents:
    """The model-independent part of phase 2: one redacted document per usable obligor, bad
    records and documents set aside. The training-set builder calls it too, so that training
    documents are assembled exactly as scoring assembles them."""
    names, lookback = inputs.names, conf.scoring.filing_lookback_days
    usable, portfolio_rows = quarantine.split_portfolio(
        inputs.portfolio, source_table=names["portfolio"]
    )
    reports = quarantine.flag_records(
        inputs.reports, key="report_id", date_col="report_date", today=today
    )
    start = F.date_sub(F.lit(as_of), lookback)
    in_window = (F.col("filing_date") <= F.lit(as_of)) & (F.col("filing_date") > start)
    filings = quarantine.flag_text(
        quarantine.flag_records(
            inputs.filings, key="filing_id", date_col="filing_date", today=today
        ),
        applies=in_window,
    )
    documents = assemble_documents(
        usable,
        reports,
        filings.where(F.col("problem").isNull()),
        as_of=as_of,
        filing_lookback_days=lookback,
    )
    scorable, document_rows = quarantine.split_documents(
        documents,
        source_table=names["portfolio"],
        as_of=as_of,
        max_chars=conf.scoring.max_document_chars,
    )
    # Personal data out before anything reads the text for the model (fingerprint included).
    scorable, kinds = redact_documents(scorable, usable, conf.redaction)
    ids = usable.select("obligor_id")
    record_rows = quarantine.record_rows(
        reports.join(ids, "obligor_id", "left_semi"),
        source_table=names["credit_reports"],
        key="report_id",
    ).unionByName(
        quarantine.record_rows(
            filings.join(ids, "obligor_id", "left_semi"),
            source_table=names["filings"],
            key="filing_id",
        )
    )
    return Documents(
        usable, scorable, portfolio_rows.unionByName(document_rows), record_rows, kinds
    )


def build_documents(
    inputs: Inputs,
    conf: RiskConf,
    model: Model,
    *,
    as_of: dt.date,
    today: dt.date,
    environment: dict[str, str] | None = None,
) -> Documents:
    """Phase 2: one document per usable obligor, bad records and documents set aside, with the
    model's features and each document's fingerprint."""
    documents = assemble_redacted(inputs, conf, as_of=as_of, today=today)
    scorable = with_feature_columns(documents.scorable, documents.usable, model.spec).withColumn(
        "fingerprint",
        incremental.fingerprint_expr(
            F.col("document"),
            model_key=model.key,
            conf_key=incremental.score_conf_key(conf.scoring, conf.reasons, environment),
            features=model.spec.columns if model.spec is not None else (),
        ),
    )
    return dataclasses.replace(documents, scorable=scorable)


def settle(
    inputs: Inputs,
    documents: Documents,
    results: DataFrame,
    counts: Tally,
    *,
    run_id: str,
    as_of: dt.date,
    model_version: str,
) -> Settled:
    """Phase 4: rows the model could not score are quarantined; every portfolio obligor must be
    in exactly one of scored and quarantined (else ReconciliationError); the rows to write."""
    portfolio_table = inputs.names["portfolio"]
    scored = results.where(F.col("pd").isNotNull())
    not_scored = quarantine.obligor_rows(
        results.where(F.col("pd").isNull()),
        source_table=portfolio_table,
        reason=F.lit("NOT_SCORED"),
        detail=F.lit("the model gave a non-finite probability"),
    )
    scored_at = dt.datetime.now(dt.UTC)
    output = scored.select(
        "obligor_id",
        F.lit(as_of).alias("as_of_date"),
        "pd",
        "grade",
        "decision",
        "n_tokens",
        "truncated",
        "n_chunks",
        "n_filings",
        "report_age_days",
        F.lit(model_version).alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(scored_at).alias("scored_at"),
        "fingerprint",
        "carried_forward",
        "scored_run_id",
        "reasons",
    )
    # Assembled once: the reconciliation, the counts and the commit read these caches.
    obligor_level, record_level = (
        _with_run(rows, run_id=run_id, as_of=as_of, at=scored_at)
        for rows in (documents.obligor_rows.unionByName(not_scored), documents.record_rows)
    )
    obligor_level.persist(StorageLevel.MEMORY_AND_DISK)
    record_level.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        levels = obligor_level.withColumn("_obligor", F.lit(True)).unionByName(
            record_level.withColumn("_obligor", F.lit(False))
        )
        reason_counts: dict[str, int] = {}
        n_quarantined = 0
        for r in levels.groupBy("source_table", "reason_code", "_obligor").count().collect():
            key = f"{r['source_table']}:{r['reason_code']}"
            reason_counts[key] = reason_counts.get(key, 0) + int(r["count"])
            n_quarantined += int(r["count"]) if r["_obligor"] else 0
        check = reconcile(
            inputs.portfolio, scored, obligor_level, counted=(counts.scored, n_quarantined)
        )
        if not check.holds:
            raise ReconciliationError(
                f"run {run_id}: {check.obligors} obligors, {check.scored} scored, "
                f"{check.quarantined} quarantined; {check.missing} missing, {check.repeated} "
                f"more than once, {check.unknown} not in the portfolio; e.g. {check.examples}"
            )
    except BaseException:
        obligor_level.unpersist()
        record_level.unpersist()
        raise
    return Settled(
        output,
        obligor_level.unionByName(record_level),
        check,
        check.rows,
        counts.grade_counts,
        reason_counts,
        cached=(obligor_level, record_level),
    )


def undo_date(spark: SparkSession, table: str, version: int, as_of: dt.date) -> None:
    """Put one as-of date of a date-partitioned table back to its rows at ``version``.

    Only that date's partition is rewritten: other dates, and other runs' commits since
    ``version``, stay as they are (a table-wide RESTORE would remove them).
    """
    this_date = F.col("as_of_date") == F.lit(as_of)
    earlier = read_version(spark, table, version, {}).where(this_date)
    replace_where(earlier, table, this_date)


def publish(
    spark: SparkSession,
    conf: RiskConf,
    settled: Settled,
    *,
    as_of: dt.date,
    lease: leases.Hold,
    committed: dict[str, int],
    failpoint: Failpoint | None,
) -> None:
    """Phase 5: replace the date's quarantine rows, then its scored rows, then add the scored
    rows to scored_history (kept after a rerun replaces them), one commit each.

    Each table's version before its commit goes into ``committed`` first, so a failure can put
    the date back (undo_date). The lease is checked right before each commit: a run that lost
    its date to another run writes nothing more.
    """
    this_date = F.col("as_of_date") == F.lit(as_of)
    for name, rows in (
        ("scoring_quarantine", settled.set_aside),
        ("scored_portfolio", settled.output),
        ("scored_history", settled.output),
    ):
        table = conf.tables.qualified(name)
        lease.check()
        committed[table] = latest_version(spark, table)
        clock = time.monotonic()
        if name == "scored_history":
            append(rows, table)
        else:
            replace_where(rows, table, this_date)
        log.info("%s as of %s: committed in %.2fs", table, as_of, time.monotonic() - clock)
        if name == "scoring_quarantine":
            failpoints.hit(failpoint, "between_commits")


def undo(
    spark: SparkSession,
    conf: RiskConf,
    committed: dict[str, int],
    *,
    as_of: dt.date,
    run_id: str,
) -> None:
    """Put back the date's rows of each table this run committed to (see undo_date), unless
    another run holds the date now: that run replaces the date when it publishes, and its own
    commits must not be undone. The run's own rows in scored_history (append-only) are deleted
    whoever holds the date: no other run replaces them, and other runs' rows stay."""
    if not committed:
        return
    committed = dict(committed)
    history = conf.tables.qualified("scored_history")
    if committed.pop(history, None) is not None:
        try:
            own = (F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == F.lit(run_id))
            DeltaTable.forName(spark, history).delete(own)
        except Exception as exc:
            log.error(
                "run %s: could not delete its rows from %s (%s)",
                run_id,
                history,
                type(exc).__name__,
            )
    try:
        holder = leases.current_lease(spark, conf.tables.qualified("scoring_locks"), as_of)
    except Exception as exc:  # the run's own error matters more; undo as if the date were free
        log.error("run %s: could not read the lease of %s (%s)", run_id, as_of, type(exc).__name__)
        holder = None
    if holder is not None and holder.run_id != run_id:
        log.error(
            "run %s: %s is held by run %s now; its rows are left to that run",
            run_id,
            as_of,
            holder.run_id,
        )
        return
    for table, version in committed.items():
        try:
            if latest_version(spark, table) != version:
                undo_date(spark, table, version, as_of)
        except Exception as exc:
            log.error(
                "run %s: could not put %s back to version %d for %s (%s)",
                run_id,
                table,
                version,
                as_of,
                type(exc).__name__,
            )


def score_documents(
    spark: SparkSession,
    conf: RiskConf,
    documents: Documents,
    model: Model,
    artifact: Broadcast[dict[str, bytes]],
    *,
    run_id: str,
    previous: DataFrame | None,
    failpoint: Failpoint | None,
    stats: Accumulator[dict[str, dict[str, Any]]] | None = None,
) -> DataFrame:
    """Phase 3: PDs, grades and decisions of the scorable documents, persisted (scored once:
    the persisted result feeds the checks and the commit). Arrow batches to the Python workers
    are bounded in rows and in bytes, whichever comes first."""
    set_arrow_batches(spark, conf.scoring)
    partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
    return score_and_grade(
        documents.scorable,
        conf,
        artifact,
        model.manifest,
        model.key,
        partitions,
        failpoint,
        run_id=run_id,
        previous=previous,
        stats=stats,
    ).persist(StorageLevel.MEMORY_AND_DISK)


def set_arrow_batches(spark: SparkSession, scoring: ScoringConf) -> None:
    """Arrow batches to the scoring UDF: at most ``arrow_batch_rows`` rows and
    ``arrow_batch_bytes`` bytes, whichever comes first."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(scoring.arrow_batch_rows))
    spark.conf.set("spark.sql.execution.arrow.maxBytesPerBatch", str(scoring.arrow_batch_bytes))


# Long on purpose: the phases of one run and the undo on failure (nested try/finally).
def run_phases(
    spark: SparkSession,
    conf: RiskConf,
    inputs: Inputs,
    model: Model,
    run: RunResult,
    *,
    previous: DataFrame | None,
    today: dt.date,
    lease: leases.Hold,
    committed: dict[str, int],
    failpoint: Failpoint | None,
    progress: Progress,
    shadows: Sequence[Challenger] = (),
) -> RunResult:
    """Phases 2 to 5 under the run's lease: documents, scores, settle, publish; then the
    challengers' shadow scores, if any."""
    as_of, run_id = run.as_of, run.run_id
    documents = build_documents(
        inputs, conf, model, as_of=as_of, today=today, environment=run.environment
    )
    artifact = spark.sparkContext.broadcast(model.files)
    stats = spark.sparkContext.accumulator({}, WorkerStats())
    results = score_documents(
        spark,
        conf,
        documents,
        model,
        artifact,
        run_id=run_id,
        previous=previous,
        failpoint=failpoint,
        stats=stats,
    )
    try:
        counts = tally(results, documents.redaction_kinds)  # scores: the first action
        rows_done, carried = counts.rows, counts.carried
        workers = worker_rows(stats.value)
        log.info(
            "run %s: model loads by executor %s",
            run_id,
            loads_by_executor(workers),
        )
        lineage.check_one_precision(
            (w["precision"] for w in workers),
            carried_precisions(spark, conf, results) if carried else (),
            run_id=run_id,
        )
        progress.done("score", rows_done - carried, rows_carried_forward=carried)
        settled = settle(
            inputs,
            documents,
            results,
            counts,
            run_id=run_id,
            as_of=as_of,
            model_version=run.model_version,
        )
        try:
            progress.done("reconcile", settled.rows_in)
            failpoints.hit(failpoint, "before_commit")
            publish(
                spark,
                conf,
                settled,
                as_of=as_of,
                lease=lease,
                committed=committed,
                failpoint=failpoint,
            )
        finally:
            settled.release()
        progress.done("commit", settled.check.scored)
        if shadows:
            shadow_scored = _shadow(spark, conf, documents, shadows, run, committed, lease)
            progress.done("shadow", shadow_scored)
        failpoints.hit(failpoint, "before_run_log")
    finally:
        results.unpersist()
        artifact.unpersist()
    check = settled.check
    return replace(
        run,
        status="success",
        rows_in=settled.rows_in,
        rows_scored=check.scored,
        rows_quarantined=check.quarantined,
        records_quarantined=sum(settled.reason_counts.values()) - check.quarantined,
        grade_counts=settled.grade_counts,
        reason_counts=settled.reason_counts,
        rows_carried_forward=carried,
        scoring_workers=tuple(workers),
        redactions=counts.redactions,
    )


def _shadow(
    spark: SparkSession,
    conf: RiskConf,
    documents: Documents,
    shadows: Sequence[Challenger],
    run: RunResult,
    committed: dict[str, int],
    lease: leases.Hold,
) -> int | None:
    """The challengers' scores (shadow_scores); a failure is logged and leaves the champion's
    run as it is."""
    try:
        return publish_shadow(
            spark,
            conf,
            documents,
            list(shadows),
            run_id=run.run_id,
            as_of=run.as_of,
            committed=committed,
            lease=lease,
        )
    except leases.LeaseLostError:
        raise  # the date is another run's now: this run must fail and undo
    except Exception as exc:
        log.error(
            "run %s: shadow scoring failed, the champion's scores stand (%s)",
            run.run_id,
            type(exc).__name__,
        )
        return None


def carried_precisions(spark: SparkSession, conf: RiskConf, results: DataFrame) -> list[str]:
    """The precisions of the runs whose model calls gave the carried rows (their scored_run_id;
    none for runs from before the workers were recorded)."""
    runs = results.where(F.col("carried_forward")).select("scored_run_id").distinct()
    rows = (
        spark.table(conf.tables.qualified("score_runs"))
        .where(F.col("status") == "success")
        .join(runs, F.col("run_id") == F.col("scored_run_id"), "left_semi")
        .select(F.explode_outer("scoring_workers.precision").alias("precision"))
        .where(F.col("precision").isNotNull())
        .distinct()
        .collect()
    )
    return [str(r["precision"]) for r in rows]


def _record_failure(
    spark: SparkSession,
    conf: RiskConf,
    run: RunResult,
    started: dt.datetime,
    clock: float,
    exc: Exception,
    progress: Progress,
) -> None:
    """Phase 6 of a failed run: its run-log row (the error's class name, never its text)."""
    failed = replace(
        run,
        status="failed",
        rows_scored=0,
        duration_s=round(time.monotonic() - clock, 3),
        rows_quarantined=0,
        records_quarantined=0,
        rows_carried_forward=0,
        grade_counts={},
        reason_counts={},
    )
    progress.done("failed", None, error=type(exc).__name__)
    try:
        append(
            run_log_row(spark, failed, started, type(exc).__name__),
            conf.tables.qualified("score_runs"),
        )
    except Exception as lost:  # the original error matters more than the log row
        log.error("run %s: could not record the failed run (%s)", run.run_id, type(lost).__name__)


# Long on purpose: the nightly steps in order, each one a named call.
def score_portfolio(
    spark: SparkSession,
    conf: RiskConf,
    *,
    as_of: dt.date,
    run_id: str | None = None,
    failpoint: Failpoint | None = None,
    mode: Mode = "full",
    inputs_as_of: dt.datetime | None = None,
) -> RunResult:
    """Score every obligor of the portfolio as of a date and record the run.

    Phases: input snapshot, documents, scores, settle and reconcile, publish, record. The
    date's rows in the scored and quarantine tables are replaced, one Delta commit each, so a
    rerun of the same date leaves one row per obligor; the run log's success row, written
    last, publishes them. A failure puts back this date's rows only (undo_date). Monitoring
    runs after publication (see monitor_published).
    ``mode="incremental"`` sends only documents whose fingerprint differs from the latest
    successful run's to the model and carries the other rows' model outputs forward.
    Every input is read as known at one knowledge time: ``inputs_as_of`` (aware, or UTC),
    else the run's start; records written later are left out and counted (late_records).
    """
    if mode not in ("full", "incremental"):
        raise ValueError(f"mode must be full or incremental, got {mode!r}")
    run_id = run_id or uuid.uuid4().hex
    progress = Progress(run_id, as_of, mode)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    today = business_date(started, conf.scoring.timezone)
    knowledge_time = knowledge_time_of(inputs_as_of, started)
    # Inputs are checked before anything is created or written.
    if as_of > today:
        raise InputError(
            f"as-of date {as_of} is in the future (today is {today} in {conf.scoring.timezone})"
        )
    # By default the current versions, read now: the knowledge time is the run's start. Commit
    # times come from the storage's clock, so only an explicit --inputs-as-of goes by them.
    inputs = read_inputs(spark, conf, knowledge_time=knowledge_time if inputs_as_of else None)
    model = load_model(spark, conf, inputs)
    shadows = challengers(spark, conf, model)
    ensure_output_tables(spark, conf)
    run = RunResult(
        run_id=run_id,
        as_of=as_of,
        status="failed",
        rows_in=0,
        rows_scored=0,
        model_version=model.manifest.model_version,
        input_versions=inputs.versions,
        duration_s=0.0,
        mode=mode,
        knowledge_time=knowledge_time,
        environment=lineage.environment(),
    )
    committed: dict[str, int] = {}
    try:
        with leases.hold(
            spark,
            conf.tables.qualified("scoring_locks"),
            as_of=as_of,
            run_id=run_id,
            lease_minutes=conf.scoring.lock_lease_minutes,
            heartbeat_seconds=conf.scoring.lock_heartbeat_seconds,
        ) as lease:
            failpoints.hit(failpoint, "after_lock")
            run = replace(run, late_records=late_records(spark, inputs, as_of=as_of))
            log.info(
                "run %s: as_of=%s model=%s inputs=%s as known at %s (left out, written later: %s)",
                run_id,
                as_of,
                run.model_version,
                inputs.versions,
                knowledge_time.isoformat(),
                run.late_records,
            )
            carried_from, previous = previous_scores(spark, conf, as_of=as_of, mode=mode)
            run = replace(run, carried_from_run_id=carried_from)
            progress.done("inputs", carried_from_run_id=carried_from)
            run = run_phases(
                spark,
                conf,
                inputs,
                model,
                run,
                previous=previous,
                today=today,
                lease=lease,
                committed=committed,
                failpoint=failpoint,
                progress=progress,
                shadows=shadows,
            )
            run = replace(run, duration_s=round(time.monotonic() - clock, 3))
            lease.check()
            append(run_log_row(spark, run, started, None), conf.tables.qualified("score_runs"))
            progress.done("done", run.rows_scored, status="success")
    except Exception as exc:
        undo(spark, conf, committed, as_of=as_of, run_id=run_id)
        _record_failure(spark, conf, run, started, clock, exc, progress)
        raise
    return monitor_published(spark, conf, run, model, progress)


def knowledge_time_of(inputs_as_of: dt.datetime | None, started: dt.datetime) -> dt.datetime:
    """The run's knowledge time (UTC): ``inputs_as_of`` (naive means UTC) or its start; never
    after its start."""
    if inputs_as_of is None:
        return started
    moment = inputs_as_of if inputs_as_of.tzinfo else inputs_as_of.replace(tzinfo=dt.UTC)
    if moment > started:
        raise InputError(f"--inputs-as-of {moment.isoformat()} is in the future")
    return moment.astimezone(dt.UTC)


def purge_expired(spark: SparkSession, conf: RiskConf, *, today: dt.date) -> int:
    """Delete scored_history rows of as-of dates older than tables.retention_days (whole
    partitions; once the rows are gone, VACUUM after the same period removes their files).
    Returns the dates dropped."""
    table = conf.tables.qualified("scored_history")
    if not spark.catalog.tableExists(table):
        return 0
    cutoff = today - dt.timedelta(days=conf.tables.retention_days)
    old = F.col("as_of_date") < F.lit(cutoff)
    dates = spark.table(table).where(old).select("as_of_date").distinct().count()
    if dates:
        DeltaTable.forName(spark, table).delete(old)
        log.info("%s: dropped %d as-of dates before %s (retention)", table, dates, cutoff)
    return dates


def monitor_published(
    spark: SparkSession, conf: RiskConf, run: RunResult, model: Model, progress: Progress
) -> RunResult:
    """After publication, outside the lease: monitoring of the run, its own phase. A failure is
    recorded in monitor_runs and returned in ``monitoring_status``; the published scores stay."""
    outcome = run_monitoring(
        spark,
        conf,
        run_id=run.run_id,
        as_of=run.as_of,
        manifest=model.manifest,
        model_dir=model.path,
    )
    progress.done("monitor", run.rows_scored, status=outcome.status)
    return replace(run, monitoring=outcome.summary, monitoring_status=outcome.status)


def backfill(
    spark: SparkSession,
    conf: RiskConf,
    *,
    start: dt.date,
    end: dt.date,
    mode: Mode = "full",
    failpoint: Failpoint | None = None,
    inputs_as_of: dt.datetime | None = None,
) -> list[RunResult]:
    """Score each as-of date from ``start`` to ``end`` (inclusive), oldest first, in one session.

    Each date is one run, atomic and idempotent as score_portfolio makes it; the first failure
    stops the backfill (its date is left as it was, the dates before it are committed) and is
    raised. In incremental mode each date reuses the previous date's scores where the
    documents did not change. ``inputs_as_of``: every date reads the inputs as known then.
    """
    if end < start:
        raise InputError(f"backfill: --to {end} is before --from {start}")
    results = []
    day = start
    while day <= end:
        results.append(
            score_portfolio(
                spark, conf, as_of=day, mode=mode, failpoint=failpoint, inputs_as_of=inputs_as_of
            )
        )
        day += dt.timedelta(days=1)
    return results
