"""Reproduce a recorded run: score its as-of date again from the input versions it recorded,
with the model version it recorded, and compare with the rows it stored (scored_history).

Nothing is written but the run log row (status ``reproduced``, mode ``reproduce``) with the
report; the scored and quarantine tables are left alone, so no lease is taken.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import asdict, dataclass, replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.lakehouse.delta import InputError, append
from riskudf.monitoring.lifecycle import successful_run
from riskudf.scoring import lineage
from riskudf.scoring.pipeline import (
    RunResult,
    build_documents,
    business_date,
    knowledge_time_of,
    load_model,
    read_inputs,
    run_log_row,
    score_documents,
)
from riskudf.scoring.worker import WorkerStats, worker_rows


@dataclass(frozen=True)
class Reproduction:
    """How a reproduction's outputs compare with the stored rows of ``of_run_id``."""

    of_run_id: str
    inputs: str  # "recorded versions" or "as of <timestamp>"
    rows_compared: int  # obligors in both
    rows_differing: int  # of those, PD beyond the tolerance, or grade or decision changed
    rows_missing: int  # obligors in only one of the two
    max_pd_diff: float | None  # largest |PD difference| over rows_compared
    pd_tolerance: float
    precision: str  # scored at: the run's recorded precision, else conf's
    environment_changes: str  # library versions that differ from the run's, "" when none

    @property
    def identical(self) -> bool:
        return self.rows_differing == 0 and self.rows_missing == 0


def compare_scores(
    stored: DataFrame, again: DataFrame, *, tolerance: float
) -> tuple[int, int, int, float | None]:
    """(rows compared, rows differing, rows missing, largest PD difference) of two sets of
    scored rows (obligor_id, pd, grade, decision), one row per obligor each. Only counts reach
    the driver."""
    cols = ("pd", "grade", "decision")
    left = stored.select("obligor_id", *[F.col(c).alias(f"{c}_stored") for c in cols])
    right = again.select("obligor_id", *[F.col(c).alias(f"{c}_again") for c in cols])
    both = F.col("pd_stored").isNotNull() & F.col("pd_again").isNotNull()
    diff = F.abs(F.col("pd_stored") - F.col("pd_again"))
    differs = (
        (diff > F.lit(tolerance))
        | ~F.col("grade_stored").eqNullSafe(F.col("grade_again"))
        | ~F.col("decision_stored").eqNullSafe(F.col("decision_again"))
    )
    row = (
        left.join(right, "obligor_id", "full_outer")
        .agg(
            F.count(F.when(both, 1)).alias("compared"),
            F.count(F.when(both & differs, 1)).alias("differing"),
            F.count(F.when(~both, 1)).alias("missing"),
            F.max(F.when(both, diff)).alias("max_diff"),
        )
        .first()
    )
    assert row is not None
    max_diff = None if row["max_diff"] is None else float(row["max_diff"])
    return int(row["compared"]), int(row["differing"]), int(row["missing"]), max_diff


def stored_rows(spark: SparkSession, conf: RiskConf, run_id: str, as_of: dt.date) -> DataFrame:
    """What the run wrote: its rows in scored_history, or for a run from before that table,
    in scored_portfolio while they are still current."""
    of_run = (F.col("run_id") == run_id) & (F.col("as_of_date") == F.lit(as_of))
    for name in ("scored_history", "scored_portfolio"):
        table = conf.tables.qualified(name)
        if spark.catalog.tableExists(table):
            rows = spark.table(table).where(of_run)
            if rows.limit(1).count():
                return rows
    raise InputError(f"no stored rows of run {run_id} (as of {as_of}) to compare with")


# Long on purpose: the steps of one reproduction in order, as the nightly run has them.
def reproduce(
    spark: SparkSession,
    conf: RiskConf,
    *,
    run_id: str,
    inputs_as_of: dt.datetime | None = None,
) -> tuple[RunResult, Reproduction]:
    """Score run ``run_id``'s as-of date again and compare with its stored rows.

    The inputs are read at the versions the run recorded, unless ``inputs_as_of`` names another
    knowledge time (a what-if: the date as known then). The model of conf must be the version
    the run recorded. The scoring is full (nothing carried forward); the run log gets a row with
    status ``reproduced`` and the comparison.
    """
    recorded = successful_run(spark, conf, run_id)
    as_of: dt.date = recorded["as_of_date"]
    own_id = uuid.uuid4().hex
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    if inputs_as_of is None:
        inputs = read_inputs(spark, conf, versions=dict(recorded["input_versions"] or {}))
        how, knowledge = "recorded versions", recorded["knowledge_time"]
    else:
        knowledge = knowledge_time_of(inputs_as_of, started)
        inputs = read_inputs(spark, conf, knowledge_time=knowledge)
        how = f"as of {knowledge.isoformat()}"
    # The precision the run's workers resolved, so that auto does not resolve otherwise here.
    recorded_precisions = {w["precision"] for w in recorded["scoring_workers"] or []}
    if len(recorded_precisions) == 1:
        scoring = conf.scoring.model_copy(update={"precision": recorded_precisions.pop()})
        conf = conf.model_copy(update={"scoring": scoring})
    # The run's own version (from the registry), whatever the aliases point at now.
    model = load_model(spark, conf, inputs, version=recorded["model_version"])
    if model.manifest.model_version != recorded["model_version"]:
        raise InputError(
            f"run {run_id} was scored with model {recorded['model_version']}, which the "
            f"registry does not know; {model.path} holds {model.manifest.model_version}"
        )
    environment = lineage.environment()
    # Timestamps come back naive, in this process's time zone.
    today = business_date(recorded["started_at"].astimezone(dt.UTC), conf.scoring.timezone)
    documents = build_documents(
        inputs, conf, model, as_of=as_of, today=today, environment=environment
    )
    artifact = spark.sparkContext.broadcast(model.files)
    stats = spark.sparkContext.accumulator({}, WorkerStats())
    results = score_documents(
        spark,
        conf,
        documents,
        model,
        artifact,
        run_id=own_id,
        previous=None,
        failpoint=None,
        stats=stats,
    )
    try:
        again = results.where(F.col("pd").isNotNull())
        tolerance = conf.scoring.reproduce_pd_tolerance
        compared, differing, missing, max_diff = compare_scores(
            stored_rows(spark, conf, run_id, as_of), again, tolerance=tolerance
        )
        rows_scored = again.count()
        workers = worker_rows(stats.value)
    finally:
        results.unpersist()
        artifact.unpersist()
    changes = environment_changes(dict(recorded["environment"] or {}), environment)
    found = Reproduction(
        run_id,
        how,
        compared,
        differing,
        missing,
        max_diff,
        tolerance,
        conf.scoring.precision,
        changes,
    )
    result = RunResult(
        run_id=own_id,
        as_of=as_of,
        status="reproduced",
        rows_in=inputs.portfolio.count(),
        rows_scored=rows_scored,
        model_version=model.manifest.model_version,
        input_versions=inputs.versions,
        duration_s=round(time.monotonic() - clock, 3),
        mode="reproduce",
        scoring_workers=tuple(workers),
        knowledge_time=knowledge,
        environment=environment,
        reproduction=asdict(found),
    )
    append(run_log_row(spark, result, started, None), conf.tables.qualified("score_runs"))
    return replace(result, rows_scored=rows_scored), found


def environment_changes(recorded: dict[str, str], now: dict[str, str]) -> str:
    """ "torch 2.5.1 -> 2.6.0, ..." for the libraries whose version differs; "" when none (or
    when the run recorded none)."""
    if not recorded:
        return ""
    names = sorted(set(recorded) | set(now))
    return ", ".join(
        f"{n} {recorded.get(n, 'absent')} -> {now.get(n, 'absent')}"
        for n in names
        if recorded.get(n) != now.get(n)
    )


def report_lines(found: Reproduction) -> list[str]:
    """The reproducibility report, as printed by the job."""
    largest = "n/a" if found.max_pd_diff is None else f"{found.max_pd_diff:.3g}"
    verdict = "reproduced" if found.identical else "NOT reproduced"
    return [
        f"reproduction of run {found.of_run_id} ({found.inputs}): {verdict}",
        f"  rows compared   {found.rows_compared}",
        f"  rows differing  {found.rows_differing} (PD beyond {found.pd_tolerance:g}, or grade "
        "or decision changed)",
        f"  rows missing    {found.rows_missing} (in only one of stored and reproduced)",
        f"  largest PD difference {largest}",
        f"  precision       {found.precision}",
        f"  libraries       {found.environment_changes or 'as recorded'}",
    ]
