"""The training-set builder: labelled documents assembled as the scoring job assembles them.

For each observation date, every obligor's document is built by the scoring job's own code
(``assemble_redacted``: quarantine, assembly as of the date, redaction) from the inputs as known
then, with the portfolio columns read at the same versions, and labelled with the default flag
of the outcomes table for that date. Rows the scoring job would quarantine are left out; so are
obligors with no outcome (the job prints each cohort's rows and defaults).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.lakehouse.delta import (
    InputError,
    MissingTableError,
    check_columns,
    latest_version,
    overwrite_table,
    read_version,
)
from riskudf.lakehouse.schemas import OUTCOME_COLUMNS
from riskudf.monitoring.run import add_months
from riskudf.scoring.pipeline import assemble_redacted, read_inputs

Knowledge = Literal["observation", "current"]


class CohortError(InputError):
    """An observation date whose outcomes cannot be known yet, or that has no outcomes."""


def knowledge_time_of(day: dt.date, timezone: str) -> dt.datetime:
    """The end of ``day`` in the lender's time zone (UTC): what was known on that date."""
    start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZoneInfo(timezone))
    return start.astimezone(dt.UTC) - dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Cohort:
    observation_date: dt.date
    knowledge_time: dt.datetime | None  # None: the inputs' current versions
    versions: dict[str, int]
    rows: DataFrame


def carried_columns(conf: RiskConf, portfolio: DataFrame) -> list[str]:
    """Portfolio columns a training row carries: the model's features and monitoring's slices
    (never the redaction's known-value columns: personal data stays out of the table)."""
    personal = {c for cols in conf.redaction.known_columns.values() for c in cols}
    wanted = [
        *conf.training.data.features.columns,
        *conf.monitoring.slice_columns,
        *(c for c in ("exposure",) if c in portfolio.columns),
    ]
    return [
        c
        for c in dict.fromkeys(wanted)
        if c in portfolio.columns and c not in personal and c not in ("obligor_id", "segment")
    ]


def cohort_rows(
    spark: SparkSession,
    conf: RiskConf,
    observation_date: dt.date,
    *,
    knowledge: Knowledge,
    today: dt.date,
    inputs_as_of: dt.datetime | None = None,
) -> Cohort:
    """The labelled rows of one observation date (not written)."""
    horizon = conf.monitoring.outcome_horizon_months
    matured = add_months(observation_date, horizon)
    if matured > today:
        raise CohortError(
            f"observation date {observation_date}: its {horizon}-month outcomes mature on "
            f"{matured}, after {today}"
        )
    known: dt.datetime | None = inputs_as_of
    if known is None and knowledge == "observation":
        known = knowledge_time_of(observation_date, conf.scoring.timezone)
    inputs = read_inputs(spark, conf, knowledge_time=known)
    documents = assemble_redacted(inputs, conf, as_of=observation_date, today=today)
    outcomes_table = conf.tables.qualified("outcomes")
    if not spark.catalog.tableExists(outcomes_table):
        raise MissingTableError(f"table {outcomes_table} does not exist")
    outcome_version = latest_version(spark, outcomes_table)
    label = conf.training.data.label_col
    outcomes = read_version(spark, outcomes_table, outcome_version, {})
    check_columns(outcomes, outcomes_table, {**OUTCOME_COLUMNS, label: "int"})
    outcomes = outcomes.where(F.col("observation_date") == F.lit(observation_date))
    # Further outcome columns (early-delinquency flags, a reference PD) come along; personal
    # data never does.
    personal = {c for cols in conf.redaction.known_columns.values() for c in cols}
    extra = [
        c for c in outcomes.columns if c not in ("obligor_id", "observation_date", label, *personal)
    ]
    carried = carried_columns(conf, documents.usable)
    rows = (
        documents.scorable.select(
            "obligor_id",
            "segment",
            F.lit(observation_date).alias("observation_date"),
            F.col("document").alias("text"),
            "report_id",
            "report_age_days",
            "n_filings",
        )
        .join(outcomes.select("obligor_id", label, *extra), "obligor_id")
        .join(documents.usable.select("obligor_id", *carried), "obligor_id")
        .withColumn("knowledge_time", F.lit(known).cast("timestamp"))
    )
    versions = {**inputs.versions, outcomes_table: outcome_version}
    return Cohort(observation_date, known, versions, rows)


def build_training_set(
    spark: SparkSession,
    conf: RiskConf,
    observation_dates: Sequence[dt.date],
    *,
    knowledge: Knowledge = "observation",
    today: dt.date,
    inputs_as_of: dt.datetime | None = None,
    table: str | None = None,
) -> list[Cohort]:
    """Build every observation date's rows and replace ``table`` (default: the conf's
    training_documents) with them in one commit; the cohorts, for the report."""
    if not observation_dates:
        raise CohortError("no observation dates")
    cohorts = [
        cohort_rows(spark, conf, day, knowledge=knowledge, today=today, inputs_as_of=inputs_as_of)
        for day in sorted(set(observation_dates))
    ]
    union = cohorts[0].rows
    for cohort in cohorts[1:]:
        union = union.unionByName(cohort.rows)
    overwrite_table(union, table or conf.tables.qualified("training_documents"))
    return cohorts
