"""The nightly scoring pipeline: inputs -> documents -> PD UDF -> grades -> Delta + run log."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.documents import assemble_documents
from riskudf.grading import add_grade_and_decision
from riskudf.inference import ScoringOptions, make_pd_udf
from riskudf.model.artifact import Manifest, artifact_key, load_artifact_bytes
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
    append,
    ensure_database,
    ensure_table,
    read_versioned,
    replace_where,
    schema,
)

log = logging.getLogger(__name__)


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
    grade_counts: dict[str, int] = field(default_factory=dict)


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
        tables.qualified("score_runs"),
        SCORE_RUNS_COLUMNS,
        comment=SCORE_RUNS_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def score_and_grade(
    documents: DataFrame,
    conf: RiskConf,
    artifact_broadcast: Broadcast[dict[str, bytes]],
    manifest: Manifest,
    model_key: str,
    partitions: int,
) -> DataFrame:
    """Apply the PD UDF and the master scale to assembled documents.

    The window (max_length) is the one the model was trained with, from its manifest.
    """
    options = ScoringOptions(
        max_length=manifest.max_length,
        token_budget=conf.scoring.token_budget,
        precision=conf.scoring.precision,
    )
    pd_udf = make_pd_udf(artifact_broadcast, key=model_key, options=options)
    scored = (
        documents.repartition(partitions, "obligor_id")
        .select("obligor_id", pd_udf(F.col("document")).alias("score"))
        .select("obligor_id", "score.pd", "score.n_tokens", "score.truncated")
    )
    return add_grade_and_decision(scored, conf.grading)


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
        result.model_version,
        result.input_versions,
        result.duration_s,
        error,
    )
    return spark.createDataFrame([row], schema(SCORE_RUNS_COLUMNS))


def score_portfolio(
    spark: SparkSession, conf: RiskConf, *, as_of: dt.date, run_id: str | None = None
) -> RunResult:
    """Score every obligor of the portfolio as of a date and record the run.

    The date's rows in the scored table are replaced in one Delta commit, so a rerun of the
    same date leaves one row per obligor; the run log row is written last.
    """
    run_id = run_id or uuid.uuid4().hex
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    tables = conf.tables
    model_dir = Path(conf.scoring.model_dir)
    versions: dict[str, int] = {}
    # Inputs are checked before anything is created or written: a wrong database or table
    # name fails here, with nothing to clean up.
    portfolio, versions[tables.qualified("portfolio")] = read_versioned(
        spark, tables.qualified("portfolio"), PORTFOLIO_COLUMNS
    )
    reports, versions[tables.qualified("credit_reports")] = read_versioned(
        spark, tables.qualified("credit_reports"), CREDIT_REPORT_COLUMNS
    )
    filings, versions[tables.qualified("filings")] = read_versioned(
        spark, tables.qualified("filings"), FILING_COLUMNS
    )
    ensure_output_tables(spark, conf)
    rows_in = 0
    model_version = ""
    broadcast = None
    try:
        # The bytes verified on the driver are the bytes shipped to the executors.
        manifest, files = load_artifact_bytes(model_dir)
        model_version = manifest.model_version
        log.info("run %s: as_of=%s model=%s inputs=%s", run_id, as_of, model_version, versions)

        documents = assemble_documents(
            portfolio,
            reports,
            filings,
            as_of=as_of,
            filing_lookback_days=conf.scoring.filing_lookback_days,
        )
        spark.conf.set(
            "spark.sql.execution.arrow.maxRecordsPerBatch", str(conf.scoring.arrow_batch_rows)
        )
        broadcast = spark.sparkContext.broadcast(files)
        partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
        scored = score_and_grade(
            documents, conf, broadcast, manifest, artifact_key(files), partitions
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
            F.lit(model_version).alias("model_version"),
            F.lit(run_id).alias("run_id"),
            F.lit(scored_at).alias("scored_at"),
        )
        replace_where(
            output, tables.qualified("scored_portfolio"), F.col("as_of_date") == F.lit(as_of)
        )

        rows_in = portfolio.count()
        grade_counts = {
            row["grade"]: int(row["count"])
            for row in spark.table(tables.qualified("scored_portfolio"))
            .where((F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == run_id))
            .groupBy("grade")
            .count()
            .collect()
        }
        result = RunResult(
            run_id=run_id,
            as_of=as_of,
            status="success",
            rows_in=rows_in,
            rows_scored=sum(grade_counts.values()),
            model_version=model_version,
            input_versions=versions,
            duration_s=round(time.monotonic() - clock, 3),
            grade_counts=grade_counts,
        )
        append(_run_row(spark, result, started, None), tables.qualified("score_runs"))
        return result
    except Exception as exc:
        failed = RunResult(
            run_id=run_id,
            as_of=as_of,
            status="failed",
            rows_in=rows_in,
            rows_scored=0,
            model_version=model_version,
            input_versions=versions,
            duration_s=round(time.monotonic() - clock, 3),
        )
        try:
            append(
                _run_row(spark, failed, started, type(exc).__name__), tables.qualified("score_runs")
            )
        except Exception:  # the original error matters more than the log row
            log.exception("run %s: could not record the failed run", run_id)
        raise
    finally:
        if broadcast is not None:
            broadcast.unpersist()
