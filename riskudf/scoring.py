"""The nightly scoring pipeline: inputs -> documents -> PD UDF -> grades -> Delta + run log.

A run holds its as-of date (runlock), scores what can be scored, sets the rest aside in the
quarantine table with a reason, checks that every portfolio obligor is in exactly one of the two,
and only then commits: quarantine, scores, and the run log row last. A failure raised on the
driver after a commit puts the committed tables back to their versions before the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pyspark import Broadcast, StorageLevel
from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StructType

from riskudf import failpoints, incremental, quarantine, runlock
from riskudf.config import GpuConf, RiskConf
from riskudf.documents import assemble_documents
from riskudf.failpoints import Failpoint
from riskudf.grading import add_grade_and_decision, decision_expr
from riskudf.inference import (
    REASONS_TYPE,
    SCORE_TYPE,
    ExplainOptions,
    ScoringOptions,
    make_pd_mapper,
    make_pd_udf,
)
from riskudf.model.artifact import (
    Manifest,
    artifact_key,
    load_artifact_bytes,
    require_pd_model,
)
from riskudf.model.features import FeatureSpec, feature_spec_of
from riskudf.monitoring.phase import run_monitoring
from riskudf.monitoring.run import MonitorSummary
from riskudf.progress import Progress
from riskudf.tables import (
    CREDIT_REPORT_COLUMNS,
    FILING_COLUMNS,
    PORTFOLIO_COLUMNS,
    RETENTION_PROPERTIES,
    SCORE_RUNS_COLUMNS,
    SCORE_RUNS_COMMENT,
    SCORED_PORTFOLIO_COLUMNS,
    SCORED_PORTFOLIO_COMMENT,
    SCORED_PORTFOLIO_PROPERTIES,
    SCORING_LOCKS_COLUMNS,
    SCORING_QUARANTINE_COLUMNS,
    SCORING_QUARANTINE_COMMENT,
    InputError,
    SchemaError,
    append,
    ensure_database,
    ensure_table,
    latest_version,
    read_versioned,
    replace_where,
    restore,
    schema,
)

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
    monitoring_status: str | None = None  # success, failed, skipped; None: not monitored


class ReconciliationError(RuntimeError):
    """Some portfolio obligor is neither scored nor quarantined, or is in both or twice."""


@dataclass(frozen=True)
class Reconciliation:
    obligors: int  # distinct non-blank obligor ids, plus one per blank-key row
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
        tables.qualified("score_runs"),
        SCORE_RUNS_COLUMNS,
        comment=SCORE_RUNS_COMMENT,
        properties=RETENTION_PROPERTIES,
    )
    ensure_table(
        spark,
        tables.qualified("scoring_locks"),
        SCORING_LOCKS_COLUMNS,
        comment="internal: which run holds which as-of date",
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
    keep = ["obligor_id", "fingerprint", "n_filings", "report_age_days"]
    if gpu is None:
        pd_udf = make_pd_udf(
            artifact_broadcast, key=model_key, options=options, with_features=bool(features)
        )
        inputs = [F.col("document")] + ([F.struct(*features)] if features else [])
        scored = to_score.repartition(partitions, "obligor_id").select(
            *keep, pd_udf(*inputs).alias("score")
        )
        outputs = [f"score.{name}" for name in incremental.MODEL_OUTPUTS]
    else:
        # Only this stage asks for a GPU per task (stage-level scheduling, see README): reading
        # and assembly keep one task per core. Local mode has no resource scheduling: one task
        # scores on the one GPU.
        mapper = make_pd_mapper(
            artifact_broadcast, key=model_key, options=options, keep=keep, features=features
        )
        fields = [to_score.schema[name] for name in keep] + list(SCORE_TYPE.fields)
        scored = to_score.repartition(1 if local else partitions, "obligor_id").mapInPandas(
            mapper, StructType(fields), profile=None if local else scoring_profile(gpu)
        )
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


def reconcile(portfolio: DataFrame, scored: DataFrame, quarantined: DataFrame) -> Reconciliation:
    """Check that each portfolio obligor is in exactly one of ``scored`` and ``quarantined``.

    ``quarantined`` holds the obligor-level quarantine rows (source: the portfolio table).
    Only counts and up to five example ids reach the driver.
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
        counts = problems.agg(
            F.count(F.when(F.col("_n").isNull(), 1)).alias("missing"),
            F.count(F.when(F.col("_n") > 1, 1)).alias("repeated"),
            F.count(F.when(F.col("_in").isNull(), 1)).alias("unknown"),
        ).first()
        examples = tuple(r["obligor_id"] for r in problems.select("obligor_id").limit(5).collect())
    finally:
        problems.unpersist()
    assert counts is not None
    blank_rows = portfolio.where(blank).count()
    return Reconciliation(
        obligors=expected.count() + blank_rows,
        scored=scored.count(),
        quarantined=quarantined.count(),
        missing=int(counts["missing"]),
        repeated=int(counts["repeated"]),
        unknown=int(counts["unknown"]),
        examples=examples,
    )


def _run_row(
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
    )
    return spark.createDataFrame([row], schema(SCORE_RUNS_COLUMNS))


def _with_run(rows: DataFrame, *, run_id: str, as_of: dt.date, at: dt.datetime) -> DataFrame:
    return rows.select(
        F.lit(run_id).alias("run_id"),
        F.lit(as_of).alias("as_of_date"),
        *quarantine.QUARANTINE_FIELDS,
        F.lit(at).alias("quarantined_at"),
    )


def score_portfolio(
    spark: SparkSession,
    conf: RiskConf,
    *,
    as_of: dt.date,
    run_id: str | None = None,
    failpoint: Failpoint | None = None,
    mode: Mode = "full",
) -> RunResult:
    """Score every obligor of the portfolio as of a date and record the run.

    The date's rows in the scored and quarantine tables are replaced, one Delta commit each,
    so a rerun of the same date leaves one row per obligor; the run log row is written last.
    ``mode="incremental"`` sends only documents whose fingerprint differs from the latest
    successful run's to the model and carries the other rows' model outputs forward; the
    date's rows are otherwise those of a full run.
    """
    if mode not in ("full", "incremental"):
        raise ValueError(f"mode must be full or incremental, got {mode!r}")
    run_id = run_id or uuid.uuid4().hex
    progress = Progress(run_id, as_of, mode)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    tables = conf.tables
    names = {t: tables.qualified(t) for t in ("portfolio", "credit_reports", "filings")}
    # Inputs are checked before anything is created or written.
    if as_of > started.date():
        raise InputError(f"as-of date {as_of} is in the future (today is {started.date()} UTC)")
    versions: dict[str, int] = {}
    portfolio, versions[names["portfolio"]] = read_versioned(
        spark, names["portfolio"], PORTFOLIO_COLUMNS
    )
    reports, versions[names["credit_reports"]] = read_versioned(
        spark, names["credit_reports"], CREDIT_REPORT_COLUMNS
    )
    filings, versions[names["filings"]] = read_versioned(spark, names["filings"], FILING_COLUMNS)
    if portfolio.limit(1).count() == 0:
        raise InputError(f"table {names['portfolio']} is empty: nothing to score")
    # The bytes verified here are the bytes shipped to the executors, which verify them again.
    manifest, files = load_artifact_bytes(Path(conf.scoring.model_dir))
    require_pd_model(manifest)
    spec = feature_spec_of(manifest.features)
    if spec is not None:
        check_feature_columns(portfolio, names["portfolio"], spec)
    model_version = manifest.model_version
    ensure_output_tables(spark, conf)
    scored_table = tables.qualified("scored_portfolio")
    quarantine_table = tables.qualified("scoring_quarantine")
    locks = tables.qualified("scoring_locks")
    rows_in = 0
    broadcast = None
    results = None
    locked = False
    before: dict[str, int] = {}
    carried_from: str | None = None
    try:
        runlock.acquire(
            spark,
            locks,
            as_of=as_of,
            run_id=run_id,
            lease_minutes=conf.scoring.lock_lease_minutes,
        )
        locked = True
        failpoints.hit(failpoint, "after_lock")
        log.info("run %s: as_of=%s model=%s inputs=%s", run_id, as_of, model_version, versions)
        model_key = artifact_key(files)
        previous = None
        if mode == "incremental":
            scored_version = latest_version(spark, scored_table)
            found = incremental.previous_run(
                spark,
                scored_table=scored_table,
                scored_version=scored_version,
                runs_table=tables.qualified("score_runs"),
                as_of=as_of,
            )
            if found is not None:
                carried_from = found[0]
                previous = incremental.previous_rows(
                    spark, scored_table=scored_table, scored_version=scored_version, run=found
                )
            log.info("run %s: incremental, reusing run %s", run_id, carried_from)
        progress.done("inputs", carried_from_run_id=carried_from)

        usable, portfolio_rows = quarantine.split_portfolio(
            portfolio, source_table=names["portfolio"]
        )
        ids = usable.select("obligor_id")
        reports = quarantine.flag_records(
            reports, key="report_id", date_col="report_date", today=started.date()
        )
        start = F.date_sub(F.lit(as_of), conf.scoring.filing_lookback_days)
        in_window = (F.col("filing_date") <= F.lit(as_of)) & (F.col("filing_date") > start)
        filings = quarantine.flag_text(
            quarantine.flag_records(
                filings, key="filing_id", date_col="filing_date", today=started.date()
            ),
            applies=in_window,
        )
        documents = assemble_documents(
            usable,
            reports,
            filings.where(F.col("problem").isNull()),
            as_of=as_of,
            filing_lookback_days=conf.scoring.filing_lookback_days,
        )
        scorable, document_rows = quarantine.split_documents(
            documents,
            source_table=names["portfolio"],
            as_of=as_of,
            max_chars=conf.scoring.max_document_chars,
        )
        scorable = with_feature_columns(scorable, usable, spec).withColumn(
            "fingerprint",
            incremental.fingerprint_expr(
                F.col("document"),
                model_key=model_key,
                conf_key=incremental.score_conf_key(conf.scoring, conf.reasons),
                features=spec.columns if spec is not None else (),
            ),
        )
        spark.conf.set(
            "spark.sql.execution.arrow.maxRecordsPerBatch", str(conf.scoring.arrow_batch_rows)
        )
        broadcast = spark.sparkContext.broadcast(files)
        partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
        # Scored once: the persisted result feeds the checks and both commits.
        results = score_and_grade(
            scorable,
            conf,
            broadcast,
            manifest,
            model_key,
            partitions,
            failpoint,
            run_id=run_id,
            previous=previous,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        rows_done = results.count()
        carried_count = results.where(F.col("carried_forward")).count()
        progress.done(
            "score",
            rows_done - carried_count,
            rows_carried_forward=carried_count,
        )
        scored = results.where(F.col("pd").isNotNull())
        not_scored = results.where(F.col("pd").isNull()).select(
            F.lit(names["portfolio"]).alias("source_table"),
            F.col("obligor_id").alias("record_key"),
            "obligor_id",
            F.lit("NOT_SCORED").alias("reason_code"),
            F.lit("the model gave a non-finite probability").alias("detail"),
        )
        obligor_rows = portfolio_rows.unionByName(document_rows).unionByName(not_scored)
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

        check = reconcile(portfolio, scored, obligor_rows)
        rows_in = portfolio.count()
        progress.done("reconcile", rows_in)
        if not check.holds:
            raise ReconciliationError(
                f"run {run_id}: {check.obligors} obligors, {check.scored} scored, "
                f"{check.quarantined} quarantined; {check.missing} missing, {check.repeated} "
                f"more than once, {check.unknown} not in the portfolio; e.g. {check.examples}"
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
        set_aside = _with_run(
            obligor_rows.unionByName(record_rows), run_id=run_id, as_of=as_of, at=scored_at
        ).persist(StorageLevel.MEMORY_AND_DISK)
        reason_counts = {
            f"{r['source_table']}:{r['reason_code']}": int(r["count"])
            for r in set_aside.groupBy("source_table", "reason_code").count().collect()
        }
        grade_counts = {
            r["grade"]: int(r["count"]) for r in scored.groupBy("grade").count().collect()
        }

        failpoints.hit(failpoint, "before_commit")
        before = {t: latest_version(spark, t) for t in (quarantine_table, scored_table)}
        this_date = F.col("as_of_date") == F.lit(as_of)
        replace_where(set_aside, quarantine_table, this_date)
        failpoints.hit(failpoint, "between_commits")
        replace_where(output, scored_table, this_date)
        set_aside.unpersist()
        progress.done("commit", check.scored)
        failpoints.hit(failpoint, "before_run_log")

        result = RunResult(
            run_id=run_id,
            as_of=as_of,
            status="success",
            rows_in=rows_in,
            rows_scored=check.scored,
            model_version=model_version,
            input_versions=versions,
            duration_s=round(time.monotonic() - clock, 3),
            rows_quarantined=check.quarantined,
            records_quarantined=sum(reason_counts.values()) - check.quarantined,
            grade_counts=grade_counts,
            reason_counts=reason_counts,
            mode=mode,
            rows_carried_forward=carried_count,
            carried_from_run_id=carried_from,
        )
        append(_run_row(spark, result, started, None), tables.qualified("score_runs"))
        # Published. Monitoring is a phase of its own: it never raises (so nothing above is
        # undone by it) and records its outcome in monitor_runs; the date stays held meanwhile.
        monitoring = run_monitoring(
            spark,
            conf,
            run_id=run_id,
            as_of=as_of,
            manifest=manifest,
            model_dir=Path(conf.scoring.model_dir),
        )
        progress.done("monitor", check.scored, status=monitoring.status)
        progress.done("done", check.scored, status="success")
        return replace(result, monitoring=monitoring.summary, monitoring_status=monitoring.status)
    except Exception as exc:
        for table, version in before.items():
            try:
                restore(spark, table, version)
            except Exception as undo:
                log.error(
                    "run %s: could not restore %s to version %d (%s)",
                    run_id,
                    table,
                    version,
                    type(undo).__name__,
                )
        failed = RunResult(
            run_id=run_id,
            as_of=as_of,
            status="failed",
            rows_in=rows_in,
            rows_scored=0,
            model_version=model_version,
            input_versions=versions,
            duration_s=round(time.monotonic() - clock, 3),
            mode=mode,
            carried_from_run_id=carried_from,
        )
        progress.done("failed", None, error=type(exc).__name__)
        try:
            append(
                _run_row(spark, failed, started, type(exc).__name__), tables.qualified("score_runs")
            )
        except Exception as lost:  # the original error matters more than the log row
            log.error("run %s: could not record the failed run (%s)", run_id, type(lost).__name__)
        raise
    finally:
        if results is not None:
            results.unpersist()
        if broadcast is not None:
            broadcast.unpersist()
        if locked:
            runlock.release(spark, locks, as_of=as_of, run_id=run_id)


def backfill(
    spark: SparkSession,
    conf: RiskConf,
    *,
    start: dt.date,
    end: dt.date,
    mode: Mode = "full",
    failpoint: Failpoint | None = None,
) -> list[RunResult]:
    """Score each as-of date from ``start`` to ``end`` (inclusive), oldest first, in one session.

    Each date is one run, atomic and idempotent as score_portfolio makes it; the first failure
    stops the backfill (its date is left as it was, the dates before it are committed) and is
    raised. In incremental mode each date reuses the previous date's scores where the
    documents did not change.
    """
    if end < start:
        raise InputError(f"backfill: --to {end} is before --from {start}")
    results = []
    day = start
    while day <= end:
        results.append(score_portfolio(spark, conf, as_of=day, mode=mode, failpoint=failpoint))
        day += dt.timedelta(days=1)
    return results
