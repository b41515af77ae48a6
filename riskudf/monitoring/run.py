"""Monitoring of one scoring run: read what scoring wrote, aggregate on Spark, write the monitor
tables and the report, and say whether an alert fails the run.

Two phases: ``compute_monitoring`` reads and aggregates and returns every record (a
``MonitorResult``); ``write_monitoring`` writes them. Only aggregates reach the driver: histograms,
per-bin sums and counts, bounded by slices x columns x fine bins whatever the portfolio's size.
The monitor tables are partitioned by as_of_date and each is written with ``replace_where`` on
(as_of_date, run_id): monitoring a run again replaces its rows, and runs of different dates
write disjoint files, so they can be monitored at the same time (Delta checks conflicts by the
files a commit read). ``riskudf.monitoring.phase`` runs monitoring after publication.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import MonitoringConf, RiskConf
from riskudf.lakehouse.delta import (
    MissingTableError,
    check_columns,
    ensure_database,
    ensure_table,
    latest_version,
    partition_by,
    read_version,
    replace_where,
    schema,
)
from riskudf.lakehouse.schemas import (
    LOG_TABLES,
    MONITOR_PARTITION,
    MONITOR_TABLES,
    OUTCOME_COLUMNS,
    RETENTION_PROPERTIES,
    ColumnSpec,
)
from riskudf.monitoring import aggregate as agg
from riskudf.monitoring.alerts import Alert, RunShares, evaluate_alerts, reference_auc
from riskudf.monitoring.backtest import BacktestRecord, backtest_records, outcome_decisions
from riskudf.monitoring.baseline import BASELINE_NAME, Baseline, Histograms, load_baseline
from riskudf.monitoring.columns import (
    TABLE_COLUMN,
    add_derived_columns,
    present_categorical,
    present_numeric,
)
from riskudf.monitoring.drift import DriftRecord, Reference, drift_records
from riskudf.monitoring.estimate import (
    Cell,
    EstimateRecord,
    estimate,
    level_error,
    matured_cells,
    with_realised,
)
from riskudf.monitoring.fairness import FairnessRecord, decisions_from_histograms, fairness_records
from riskudf.monitoring.metrics import Grid, frequent_items
from riskudf.monitoring.migration import MigrationRecord, migration_records
from riskudf.monitoring.report import ReportData, write_report
from riskudf.monitoring.shadow import compare_shadow
from riskudf.monitoring.shadow import write as write_shadow
from riskudf.safe_logging import safe_message

if TYPE_CHECKING:  # monitoring reads the manifest's metadata; it never loads the model
    from riskudf.model.artifact import Manifest


log = logging.getLogger(__name__)
# Quarantine reasons (riskudf.documents.quarantine) that mean the obligor had no usable document.
EMPTY_DOCUMENT_REASONS = ("NO_REPORT", "EMPTY_TEXT")


@dataclass(frozen=True)
class PreviousRun:
    run_id: str
    as_of: dt.date
    finished_at: str  # as Spark formats it in the session time zone, for time travel
    model_version: str | None


class _Phases:
    """Wall time per phase of monitoring, for the log and the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


@dataclass(frozen=True)
class MonitorSummary:
    run_id: str
    as_of: dt.date
    alerts: tuple[Alert, ...]
    rows_written: dict[str, int]
    report_path: Path | None
    fails_run: bool
    duration_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    phase_s: dict[str, float] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)  # Delta version of each read

    @property
    def alerts_fired(self) -> int:
        """Alerts of severity alert (warnings not counted)."""
        return sum(1 for a in self.alerts if a.severity == "alert")


def monitor_table(conf: RiskConf, name: str) -> str:
    return f"{conf.tables.database}.{name}"


def ensure_monitor_tables(spark: SparkSession, conf: RiskConf) -> None:
    """Create the monitor and log tables; a monitor table of an older release, unpartitioned,
    is rewritten partitioned by as_of_date (once, one commit; see lakehouse.delta.partition_by)."""
    ensure_database(spark, conf.tables.database)
    for name, (columns, comment) in MONITOR_TABLES.items():
        table = monitor_table(conf, name)
        ensure_table(
            spark,
            table,
            columns,
            partitioned_by=MONITOR_PARTITION,
            comment=comment,
            properties=RETENTION_PROPERTIES,
        )
        if partition_by(spark, table, MONITOR_PARTITION):
            log.warning("%s: rewritten partitioned by %s (upgrade)", table, MONITOR_PARTITION)
    ensure_log_tables(spark, conf)


def ensure_log_tables(spark: SparkSession, conf: RiskConf) -> None:
    ensure_database(spark, conf.tables.database)
    for name, (columns, comment) in LOG_TABLES.items():
        table = conf.tables.qualified(name)
        ensure_table(spark, table, columns, comment=comment, properties=RETENTION_PROPERTIES)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later, clamped to the month's end (Jan 31 + 1 -> Feb 28)."""
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):  # a struct
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_records(
    spark: SparkSession,
    table: str,
    columns: tuple[ColumnSpec, ...],
    records: Sequence[Any],
    common: dict[str, Any],
    *,
    skip_if_empty: bool = False,
) -> int:
    """Replace the run's rows of a monitor table with ``records`` (dataclasses or dicts): the
    rows of its as_of_date partition with its run_id, so other dates' writers never conflict.

    ``skip_if_empty``: the table holds no rows of the run, so nothing needs replacing and an
    empty list costs no commit.
    """
    names = [name for name, _, _, _ in columns]

    def value(record: Any, name: str) -> Any:
        if name in common:
            return common[name]
        return record[name] if isinstance(record, dict) else getattr(record, name)

    rows = [tuple(_plain(value(record, name)) for name in names) for record in records]
    if not rows and skip_if_empty:
        return 0
    if rows:
        # Through pandas and Arrow: no Python worker, fast for the thousands of histogram bins.
        frame_pd = pd.DataFrame(rows, columns=names, dtype=object)
        for name, kind, _, _ in columns:
            if kind == "TIMESTAMP":
                frame_pd[name] = pd.to_datetime(frame_pd[name], utc=True)
        frame = spark.createDataFrame(frame_pd, schema(columns))
    else:
        frame = spark.createDataFrame([], schema(columns))
    run = (F.col("as_of_date") == F.lit(common["as_of_date"])) & (
        F.col("run_id") == F.lit(common["run_id"])
    )
    replace_where(frame, table, run)
    return len(rows)


def previous_run(
    spark: SparkSession, conf: RiskConf, *, run_id: str, as_of: dt.date
) -> PreviousRun | None:
    """The previous successful run: an earlier as-of date, or the same date finished earlier."""
    runs = spark.table(conf.tables.qualified("score_runs"))
    mine = runs.where(F.col("run_id") == run_id).agg(F.max("finished_at").alias("mine"))
    before = F.coalesce(F.col("mine"), F.current_timestamp())
    row = (
        runs.crossJoin(mine)
        .where(
            (F.col("status") == "success")
            & (F.col("run_id") != run_id)
            & (
                (F.col("as_of_date") < F.lit(as_of))
                | ((F.col("as_of_date") == F.lit(as_of)) & (F.col("finished_at") < before))
            )
        )
        .orderBy(F.col("as_of_date").desc(), F.col("finished_at").desc())
        .select(
            "run_id",
            "as_of_date",
            F.date_format("finished_at", "yyyy-MM-dd HH:mm:ss.SSSSSS").alias("finished"),
            "model_version",
        )
        .first()
    )
    if row is None:
        return None
    return PreviousRun(row["run_id"], row["as_of_date"], row["finished"], row["model_version"])


def previous_rows(spark: SparkSession, conf: RiskConf, previous: PreviousRun) -> DataFrame | None:
    """The previous run's scored rows, read from the table as it was when that run finished
    (a rerun of the same date has replaced them since)."""
    table = conf.tables.qualified("scored_portfolio")
    try:
        rows = (
            spark.read.option("timestampAsOf", previous.finished_at)
            .table(table)
            .where(
                (F.col("run_id") == previous.run_id)
                & (F.col("as_of_date") == F.lit(previous.as_of))
            )
        )
        rows.schema  # noqa: B018 - resolves the time travel now, so a vacuumed version fails here
        return rows
    except Exception as exc:
        log.warning(
            "rows of previous run %s are not readable (%s)", previous.run_id, type(exc).__name__
        )
        return None


_EMPTY_PROFILE: dict[str, Any] = dict.fromkeys(
    ("avg", "stddev", "min", "max", "quantiles", "distinct_count", "frequent_items")
)


def _profile(
    slice_key: str | None,
    slice_value: str | None,
    column: str,
    data_type: str,
    count: int,
    nulls: int,
    **metrics: Any,
) -> dict[str, Any]:
    return _EMPTY_PROFILE | {
        "slice_key": slice_key,
        "slice_value": slice_value,
        "column_name": column,
        "data_type": data_type,
        "count": count,
        "num_nulls": nulls,
        "percent_null": nulls / count if count else None,
        **metrics,
    }


def _profile_records(
    profile_rows: list[Any], histograms: Histograms, numeric: dict[str, Grid]
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    slice_rows: dict[tuple[str | None, str | None], int] = {}
    for row in profile_rows:
        slice_key, slice_value, name = row["slice_key"], row["slice_value"], row["column_name"]
        count = int(row["count"])
        slice_rows[(slice_key, slice_value)] = count
        hist = histograms.get((slice_key, slice_value, name))
        distinct = row["approx_distinct"]
        if numeric[name].exact and hist is not None and hist.numeric is not None:
            distinct = int(np.count_nonzero(hist.numeric.counts))  # exact from the value bins
        records.append(
            _profile(
                slice_key,
                slice_value,
                name,
                "numeric",
                count,
                count - int(row["non_null"]),
                avg=row["avg"],
                stddev=row["stddev"],
                min=row["min"],
                max=row["max"],
                quantiles=row["quantiles"],
                distinct_count=distinct,
            )
        )
    for (slice_key, slice_value, name), hist in histograms.items():
        if hist.categories is not None:
            slice_rows.setdefault((slice_key, slice_value), hist.rows)
            records.append(
                _profile(
                    slice_key,
                    slice_value,
                    name,
                    "categorical",
                    hist.rows,
                    hist.nulls,
                    distinct_count=len(hist.categories),
                    frequent_items=frequent_items(hist.categories),
                )
            )
    for (slice_key, slice_value), count in slice_rows.items():
        records.append(_profile(slice_key, slice_value, TABLE_COLUMN, "table", count, 0))
    return sorted(
        records, key=lambda r: (r["slice_key"] or "", r["slice_value"] or "", r["column_name"])
    )


def _bin_record(
    key: tuple[str | None, str | None, str],
    count: float,
    index: int | None = None,
    lower: float | None = None,
    upper: float | None = None,
    category: str | None = None,
) -> dict[str, Any]:
    return {
        "slice_key": key[0],
        "slice_value": key[1],
        "column_name": key[2],
        "bin_index": index,
        "bin_lower": lower,
        "bin_upper": upper,
        "category": category,
        "count": int(count),
    }


def _histogram_records(histograms: Histograms) -> list[dict[str, Any]]:
    """One record per fine bin, category, and null count of each slice and column."""
    records = []
    for key, hist in sorted(histograms.items(), key=lambda item: tuple(k or "" for k in item[0])):
        if hist.nulls:
            records.append(_bin_record(key, hist.nulls))
        if hist.numeric is not None:
            grid, bins = hist.numeric.grid, hist.numeric
            lowers = grid.lower(bins.index)
            for index, low, count in zip(bins.index, lowers, bins.counts, strict=True):
                records.append(_bin_record(key, count, int(index), float(low), low + grid.width))
        for category, count in sorted((hist.categories or {}).items()):
            records.append(_bin_record(key, count, category=category))
    return records


def _stored_histograms(
    spark: SparkSession, conf: RiskConf, run_id: str, numeric: dict[str, Grid]
) -> Histograms:
    rows = (
        spark.table(monitor_table(conf, "monitor_histogram"))
        .where(F.col("run_id") == run_id)
        .select("slice_key", "slice_value", "column_name", "bin_index", "category", "count")
        .collect()
    )
    return agg.collect_histograms(rows, numeric)


def _quarantined_obligors(spark: SparkSession, conf: RiskConf, run_id: str) -> dict[str, int]:
    """Reason code -> obligors of the run set aside whole (rows sourced from the portfolio;
    report and filing records set aside alone do not keep an obligor from being scored)."""
    table = conf.tables.qualified("scoring_quarantine")
    if not spark.catalog.tableExists(table):
        return {}
    rows = (
        spark.table(table)
        .where(
            (F.col("run_id") == run_id)
            & (F.col("source_table") == conf.tables.qualified("portfolio"))
        )
        .groupBy("reason_code")
        .count()
        .collect()
    )
    return {row["reason_code"]: int(row["count"]) for row in rows}


def _shares(histograms: Histograms, quarantined: dict[str, int]) -> RunShares:
    """Shares of the run's obligors (scored + quarantined): quarantined, and with an empty
    document (scored from special tokens only, or set aside for having no report or text)."""
    empty = histograms.get((None, None, "empty_document"))
    scored = empty.rows if empty is not None else 0
    set_aside = sum(quarantined.values())
    total = scored + set_aside
    if total == 0:
        return RunShares(None, None)
    empty_scored = (empty.categories or {}).get("true", 0) if empty is not None else 0
    empty_set_aside = sum(quarantined.get(reason, 0) for reason in EMPTY_DOCUMENT_REASONS)
    return RunShares((empty_scored + empty_set_aside) / total, set_aside / total)


def _matured_cohorts(spark: SparkSession, conf: RiskConf, as_of: dt.date) -> list[dt.date]:
    horizon = conf.monitoring.outcome_horizon_months
    dates = [
        row["as_of_date"]
        for row in spark.table(conf.tables.qualified("scored_portfolio"))
        .where(F.col("as_of_date") <= F.lit(as_of))
        .select("as_of_date")
        .distinct()
        .collect()
    ]
    matured = sorted((d for d in dates if add_months(d, horizon) <= as_of), reverse=True)
    return matured[: conf.monitoring.backtest_cohorts]


def run_portfolio_versions(
    spark: SparkSession, conf: RiskConf, runs: list[tuple[str, dt.date]]
) -> dict[tuple[str, dt.date], int]:
    """The portfolio version each run read (score_runs.input_versions); runs that did not
    record it are left out."""
    if not runs:
        return {}
    name = conf.tables.qualified("portfolio")
    wanted = F.struct(F.col("run_id"), F.col("as_of_date")).isin(
        [F.struct(F.lit(r), F.lit(d)) for r, d in runs]
    )
    rows = (
        spark.table(conf.tables.qualified("score_runs"))
        .where(wanted & (F.col("status") == "success"))
        .select("run_id", "as_of_date", F.col("input_versions")[name].alias("version"))
        .where(F.col("version").isNotNull())
        .collect()
    )
    return {(r["run_id"], r["as_of_date"]): int(r["version"]) for r in rows}


def portfolio_of_run(
    spark: SparkSession, conf: RiskConf, run_id: str, as_of: dt.date
) -> tuple[DataFrame, int]:
    """The portfolio as the run read it (its recorded version), else its current version."""
    name = conf.tables.qualified("portfolio")
    version = run_portfolio_versions(spark, conf, [(run_id, as_of)]).get(
        (run_id, as_of), latest_version(spark, name)
    )
    return read_version(spark, name, version, {}), version


def cohort_attributes(
    spark: SparkSession, conf: RiskConf, rows: DataFrame, slices: list[str]
) -> DataFrame:
    """``rows`` (scored rows of several cohorts) with each cohort's slice attributes as its
    run read them: the portfolio at that run's recorded version, not today's."""
    if not slices:
        return rows
    runs = [
        (r["run_id"], r["as_of_date"])
        for r in rows.select("run_id", "as_of_date").distinct().collect()
    ]
    versions = run_portfolio_versions(spark, conf, runs)
    name = conf.tables.qualified("portfolio")
    current = latest_version(spark, name)
    frames = [
        read_version(spark, name, versions.get(run, current), {})
        .select("obligor_id", *slices)
        .dropDuplicates(["obligor_id"])
        .withColumn("run_id", F.lit(run[0]))
        for run in runs
    ]
    if not frames:
        return rows.select("*", *[F.lit(None).cast("string").alias(c) for c in slices])
    attributes = frames[0]
    for frame in frames[1:]:
        attributes = attributes.unionByName(frame)
    return rows.join(attributes, ["run_id", "obligor_id"], "left")


def pinned(spark: SparkSession, table: str, versions: dict[str, int]) -> DataFrame:
    """``table`` at its current version, recorded in ``versions`` (the first read pins it)."""
    if table not in versions:
        versions[table] = latest_version(spark, table)
    return read_version(spark, table, versions[table], {})


def backtest_cohorts(
    spark: SparkSession,
    conf: RiskConf,
    slices: list[str],
    cohorts: list[dt.date],
    versions: dict[str, int],
    notes: list[str],
) -> tuple[list[BacktestRecord], list[Any]]:
    outcomes_table = conf.tables.qualified("outcomes")
    if not spark.catalog.tableExists(outcomes_table):
        raise MissingTableError(f"table {outcomes_table} does not exist")
    outcomes = pinned(spark, outcomes_table, versions)
    check_columns(outcomes, outcomes_table, OUTCOME_COLUMNS)
    rows = (
        pinned(spark, conf.tables.qualified("scored_portfolio"), versions)
        .where(F.col("as_of_date").isin(cohorts))
        .join(
            outcomes.select(
                "obligor_id", F.col("observation_date").alias("as_of_date"), "default_12m"
            ).where(F.col("default_12m").isNotNull()),
            ["obligor_id", "as_of_date"],
        )
    )
    try:
        bins = agg.outcome_bins(
            cohort_attributes(spark, conf, rows, slices), slice_columns=slices
        ).collect()
    except Exception as exc:  # a cohort's version is past the portfolio table's retention
        name = conf.tables.qualified("portfolio")
        notes.append(
            f"backtest slices: a cohort's portfolio version of {name} is no longer readable "
            f"({type(exc).__name__}); slice attributes from its current version instead"
        )
        current = read_version(spark, name, latest_version(spark, name), {})
        bins = agg.outcome_bins(
            agg.with_attributes(rows, current, slices), slice_columns=slices
        ).collect()
    horizon = conf.monitoring.outcome_horizon_months
    return backtest_records(bins, horizon_months=horizon), bins


@dataclass(frozen=True)
class TableRows:
    """A monitor table's rows of one run: records (dataclasses or dicts) and shared values."""

    columns: tuple[ColumnSpec, ...]
    records: list[Any]
    common: dict[str, Any]


@dataclass(frozen=True)
class MonitorResult:
    """Everything monitoring computed for a run, before anything is written."""

    run_id: str
    as_of: dt.date
    tables: dict[str, TableRows]  # keyed by monitor table name, in writing order
    report: ReportData
    fails_run: bool
    started: float  # time.monotonic() at the start of the computation
    phase_s: dict[str, float]
    input_versions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Drift:
    records: list[DriftRecord]
    baseline: Baseline | None
    previous: PreviousRun | None
    previous_rows: DataFrame | None


def _slices(portfolio: DataFrame, mon: MonitoringConf, notes: list[str]) -> list[str]:
    wanted = list(dict.fromkeys([*mon.slice_columns, *(a.column for a in mon.fairness)]))
    slices = [c for c in wanted if c in portfolio.columns]
    if len(slices) < len(wanted):
        missing = sorted(set(wanted) - set(slices))
        notes.append(f"portfolio lacks slice or fairness columns {missing}: not sliced by them")
    return slices


def _drift(
    spark: SparkSession,
    conf: RiskConf,
    run: tuple[str, dt.date],
    histograms: Histograms,
    numeric: dict[str, Grid],
    portfolio: DataFrame,
    slices: list[str],
    manifest: Manifest,
    model_dir: Path,
    notes: list[str],
) -> _Drift:
    """Drift against the model's baseline and the previous successful run."""
    run_id, as_of = run
    records: list[DriftRecord] = []
    baseline = load_baseline(
        model_dir,
        expected_sha256=manifest.files.get(BASELINE_NAME),
        model_version=manifest.model_version,
    )
    if baseline is None:
        notes.append("model has no baseline: BASELINE drift skipped")
    else:
        reference = Reference(
            "BASELINE", baseline.histograms, baseline.edges, model_version=manifest.model_version
        )
        records += drift_records(histograms, reference)
    previous = previous_run(spark, conf, run_id=run_id, as_of=as_of)
    prev_rows = previous_rows(spark, conf, previous) if previous else None
    if previous is None:
        notes.append("no previous successful run: CONSECUTIVE drift and migration skipped")
        return _Drift(records, baseline, None, None)
    stored = _stored_histograms(spark, conf, previous.run_id, numeric)
    if not stored and prev_rows is not None:
        # A run from before monitoring; its table may lack columns added since.
        prev = agg.with_attributes(add_derived_columns(prev_rows), portfolio, slices)
        prev_numeric = present_numeric(prev)
        stored = agg.collect_histograms(
            agg.histograms(
                prev,
                slice_columns=slices,
                numeric=prev_numeric,
                categorical=present_categorical(prev),
            ).collect(),
            prev_numeric,
        )
    records += drift_records(
        histograms,
        Reference(
            "CONSECUTIVE",
            stored,
            baseline.edges if baseline else {},
            run_id=previous.run_id,
            as_of=previous.as_of,
            model_version=previous.model_version,
        ),
    )
    return _Drift(records, baseline, previous, prev_rows)


def _fairness(
    mon: MonitoringConf,
    slices: list[str],
    histograms: Histograms,
    outcome_bins: list[Any],
    as_of: dt.date,
) -> list[FairnessRecord]:
    """Approval rates per group: of this run, and of each matured cohort with outcomes."""
    fairness: list[FairnessRecord] = []
    matured = outcome_decisions(outcome_bins, [a.column for a in mon.fairness])
    for attribute in mon.fairness:
        if attribute.column not in slices:
            continue
        fairness += fairness_records(
            decisions_from_histograms(histograms, attribute.column), attribute, as_of
        )
        for cohort in sorted({k[0] for k in matured if k[1] == attribute.column}):
            groups = {k[2]: v for k, v in matured.items() if k[:2] == (cohort, attribute.column)}
            fairness += fairness_records(groups, attribute, cohort)
    return fairness


def _cohort_backtest(
    spark: SparkSession,
    conf: RiskConf,
    slices: list[str],
    as_of: dt.date,
    notes: list[str],
    versions: dict[str, int],
) -> tuple[list[BacktestRecord], list[Any]]:
    cohorts = _matured_cohorts(spark, conf, as_of)
    if not cohorts:
        months = conf.monitoring.outcome_horizon_months
        notes.append(f"no cohort scored {months} months before {as_of}: backtest skipped")
        return [], []
    try:
        return backtest_cohorts(spark, conf, slices, cohorts, versions, notes)
    except MissingTableError as exc:
        notes.append(f"{exc}: backtest skipped")
        return [], []


def _alert_rows(alerts: list[Alert], run_id: str, at: dt.datetime) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": a.alert_id(run_id),
            "rule": a.rule,
            "severity": a.severity,
            "metric": a.metric,
            "slice_key": a.slice_key,
            "slice_value": a.slice_value,
            "value": float(a.value),
            "threshold": float(a.threshold),
            "created_at": at,
            "status": "open",
            "acknowledged_at": None,
        }
        for a in alerts
    ]


def _migration(
    conf: RiskConf,
    rows: DataFrame,
    drift: _Drift,
    portfolio: DataFrame,
    slices: list[str],
    notes: list[str],
) -> list[MigrationRecord]:
    """Grade migration from the previous successful run's rows to this run's."""
    previous = drift.previous
    if previous is None:
        return []
    if drift.previous_rows is None:
        notes.append(f"rows of previous run {previous.run_id} unreadable: migration skipped")
        return []
    counts = agg.migration_counts(rows, drift.previous_rows, portfolio, slice_columns=slices)
    return migration_records(
        counts.collect(),
        [band.grade for band in conf.grading.master_scale],
        notches_threshold=conf.monitoring.migration_notches,
    )


def _table_rows(
    report: ReportData,
    previous: PreviousRun | None,
    profile: list[Any],
    numeric: dict[str, Grid],
    monitored_at: dt.datetime,
    model_version: str,
    band_level: float,
) -> dict[str, TableRows]:
    """Each monitor table's records of the run, monitor_profile first (see write_monitoring)."""
    as_of = report.as_of
    common: dict[str, Any] = {
        "run_id": report.run_id,
        "as_of_date": as_of,
        "monitored_at": monitored_at,
    }
    window = {
        "window_start": as_of,
        "window_end": as_of + dt.timedelta(days=1),
        "granularity": "1 day",
        "model_version": model_version,
    }
    previous_key = {
        "previous_run_id": previous.run_id if previous else None,
        "previous_as_of_date": previous.as_of if previous else None,
    }
    records: dict[str, tuple[list[Any], dict[str, Any]]] = {
        "monitor_profile": (_profile_records(profile, report.histograms, numeric), common | window),
        "monitor_histogram": (_histogram_records(report.histograms), common),
        "monitor_drift": (report.drift, common),
        "monitor_migration": (report.migration, common | previous_key),
        "monitor_backtest": (report.backtest, common),
        "monitor_estimates": (report.estimates, common | {"band_level": band_level}),
        "monitor_fairness": (report.fairness, common),
        "monitor_alerts": (_alert_rows(report.alerts, report.run_id, monitored_at), common),
    }
    return {
        name: TableRows(MONITOR_TABLES[name][0], rows, values)
        for name, (rows, values) in records.items()
    }


def _estimates(
    mon: MonitoringConf,
    as_of: dt.date,
    cells: list[Any],
    outcome_bins: list[Any],
    backtest: list[BacktestRecord],
    level_sd: float,
) -> list[EstimateRecord]:
    """This run's PD-only estimates (first: its portfolio row), then each matured cohort's,
    with the backtest's realised figures beside them. ``level_sd``: the run's model's
    calibrated-level error, used for the matured cohorts too (docs/monitoring.md)."""

    def estimated(found: list[Cell], cohort_date: dt.date) -> list[EstimateRecord]:
        return estimate(
            found,
            cohort_date=cohort_date,
            level=mon.estimate_level,
            simulations=mon.estimate_simulations,
            level_sd=level_sd,
        )

    found = [Cell(r["grade"], int(r["pd_bin"]), int(r["n"]), float(r["sum_pd"])) for r in cells]
    records = estimated(found, as_of)
    for (cohort, cohort_run), matured in sorted(matured_cells(outcome_bins).items()):
        records += with_realised(estimated(matured, cohort), backtest, cohort_run)
    return records


def _shadow(
    spark: SparkSession, conf: RiskConf, run_id: str, as_of: dt.date, notes: list[str]
) -> list[dict[str, Any]]:
    """The champion against each challenger (monitoring.shadow); a failure is a note, and the
    champion's monitoring goes on."""
    try:
        return compare_shadow(spark, conf, run_id=run_id, as_of=as_of)
    except Exception as exc:
        log.error("run %s: shadow comparison failed (%s)", run_id, safe_message(exc))
        notes.append(f"champion against challengers: the comparison failed ({type(exc).__name__})")
        return []


# Long on purpose: the monitoring steps in order, each one a named helper.
def compute_monitoring(
    spark: SparkSession,
    conf: RiskConf,
    *,
    run_id: str,
    as_of: dt.date,
    manifest: Manifest,
    model_dir: str | Path,
) -> MonitorResult:
    """Monitor the scored rows of one run (``scored_portfolio`` where run_id and as_of_date):
    every record of every monitor table and the report's data, computed; nothing written."""
    clock, phases, mon = time.monotonic(), _Phases(), conf.monitoring
    notes: list[str] = []
    monitored_at = dt.datetime.now(dt.UTC)
    # The portfolio as the run read it; outcomes and scores as they are now, each pinned.
    versions: dict[str, int] = {}
    portfolio, versions[conf.tables.qualified("portfolio")] = portfolio_of_run(
        spark, conf, run_id, as_of
    )
    slices = _slices(portfolio, mon, notes)
    scored = pinned(spark, conf.tables.qualified("scored_portfolio"), versions).where(
        (F.col("run_id") == run_id) & (F.col("as_of_date") == F.lit(as_of))
    )
    rows = agg.with_attributes(add_derived_columns(scored), portfolio, slices).persist()
    try:
        numeric, categorical = present_numeric(rows), present_categorical(rows)
        histograms = agg.collect_histograms(
            agg.histograms(
                rows, slice_columns=slices, numeric=numeric, categorical=categorical
            ).collect(),
            numeric,
        )
        profile = agg.numeric_profile(rows, slice_columns=slices, numeric=numeric).collect()
        phases.lap("aggregate")
        drift = _drift(
            spark, conf, (run_id, as_of), histograms, numeric, portfolio, slices, manifest,
            Path(model_dir), notes,
        )  # fmt: skip
        phases.lap("drift")
        migration = _migration(conf, rows, drift, portfolio, slices, notes)
        phases.lap("migration")
        cells = agg.grade_pd_cells(rows).collect()
    finally:
        rows.unpersist()
    backtest, outcome_bins = _cohort_backtest(spark, conf, slices, as_of, notes, versions)
    phases.lap("backtest")
    fairness = _fairness(mon, slices, histograms, outcome_bins, as_of)
    level_sd = level_error(manifest.calibration)
    estimates = _estimates(mon, as_of, cells, outcome_bins, backtest, level_sd)
    phases.lap("estimate")
    alerts = evaluate_alerts(
        mon.alerts,
        as_of=as_of,
        drift=drift.records,
        backtest=backtest,
        fairness=fairness,
        shares=_shares(histograms, _quarantined_obligors(spark, conf, run_id)),
        reference_auc=reference_auc(manifest.metrics),
        estimated_auc=next(
            (r.expected_auc for r in estimates if r.cohort_date == as_of and r.grade is None),
            None,
        ),
    )
    phases.lap("alerts")
    shadow = _shadow(spark, conf, run_id, as_of, notes)
    phases.lap("shadow")
    baseline, previous = drift.baseline, drift.previous
    report = ReportData(
        run_id=run_id,
        as_of=as_of,
        model_version=manifest.model_version,
        histograms=histograms,
        baseline=baseline.histograms if baseline else None,
        psi_edges=baseline.edges if baseline else {},
        drift=drift.records,
        migration=migration,
        backtest=backtest,
        fairness=fairness,
        alerts=alerts,
        notes=notes,
        previous_run_id=previous.run_id if previous else None,
        shadow=shadow,
        estimates=estimates,
    )
    fired = sum(1 for a in alerts if a.severity == "alert")
    return MonitorResult(
        run_id=run_id,
        as_of=as_of,
        tables=_table_rows(
            report,
            previous,
            profile,
            numeric,
            monitored_at,
            manifest.model_version,
            mon.estimate_level,
        ),
        report=report,
        fails_run=bool(fired and mon.fail_on_alert),
        started=clock,
        phase_s=phases.seconds,
        input_versions=versions,
    )


def write_monitoring(spark: SparkSession, conf: RiskConf, result: MonitorResult) -> MonitorSummary:
    """Write a computed run: each monitor table's rows of the run (one commit each, replacing
    the rows of an earlier monitoring of it, in the run's as_of_date partition), then the report.
    The tables exist (ensure_monitor_tables).
    """
    phases = _Phases()
    run_id, as_of = result.run_id, result.as_of
    # monitor_profile is written first and is never empty: without rows there, no table holds
    # rows of this run, and empty results need no Delta commit.
    first_time = (
        spark.table(monitor_table(conf, "monitor_profile"))
        .where((F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == run_id))
        .limit(1)
        .count()
        == 0
    )
    written = {
        name: write_records(
            spark,
            monitor_table(conf, name),
            rows.columns,
            rows.records,
            rows.common,
            skip_if_empty=first_time and name != "monitor_profile",
        )
        for name, rows in result.tables.items()
    }
    if result.report.shadow:
        try:  # the comparison's failure leaves the champion's monitoring as it is
            write_shadow(spark, conf, result.report.shadow, run_id=run_id)
        except Exception as exc:
            log.error("run %s: shadow comparison not written (%s)", run_id, safe_message(exc))
    phases.lap("write")
    report_path = Path(conf.monitoring.report_dir) / as_of.isoformat() / f"{run_id}.html"
    write_report(spark, conf, report_path, result.report)
    phases.lap("report")
    summary = MonitorSummary(
        run_id=run_id,
        as_of=as_of,
        alerts=tuple(result.report.alerts),
        rows_written=written,
        report_path=report_path,
        fails_run=result.fails_run,
        duration_s=round(time.monotonic() - result.started, 3),
        notes=tuple(result.report.notes),
        phase_s=result.phase_s | phases.seconds,
        input_versions=result.input_versions,
    )
    _log_summary(summary)
    return summary


def _log_summary(summary: MonitorSummary) -> None:
    run_id = summary.run_id
    for note in summary.notes:
        log.info("monitoring run %s: %s", run_id, note)
    for alert in summary.alerts:
        if alert.severity == "alert":
            log.warning(
                "ALERT run %s: %s %s=%.4g crossed %.4g%s",
                run_id,
                alert.rule,
                alert.metric,
                alert.value,
                alert.threshold,
                f" on {alert.slice_key}={alert.slice_value}" if alert.slice_key else "",
            )
    log.info(
        "monitoring run %s: %d alerts, %d warnings in %.1fs (%s); report %s%s",
        run_id,
        summary.alerts_fired,
        len(summary.alerts) - summary.alerts_fired,
        summary.duration_s,
        ", ".join(f"{name} {seconds:.1f}s" for name, seconds in summary.phase_s.items()),
        summary.report_path,
        "; conf fails the run on alerts" if summary.fails_run else "",
    )


def monitor_run(
    spark: SparkSession,
    conf: RiskConf,
    *,
    run_id: str,
    as_of: dt.date,
    manifest: Manifest,
    model_dir: str | Path,
) -> MonitorSummary:
    """Monitor one run: compute everything, then write the monitor tables and the report.

    Rows are keyed by as_of_date and run_id and replaced when the run is monitored again.
    Errors propagate; riskudf.monitoring.phase.run_monitoring is the caller that contains them.
    """
    ensure_monitor_tables(spark, conf)  # before computing: drift reads stored histograms
    result = compute_monitoring(
        spark, conf, run_id=run_id, as_of=as_of, manifest=manifest, model_dir=model_dir
    )
    return write_monitoring(spark, conf, result)
